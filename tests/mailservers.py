"""Real SMTP servers for the email tests: aiosmtpd as a sink for outbound mail, free ports, and a
client that builds and sends requests. Nothing here reaches beyond 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import socket
import threading
from email.message import EmailMessage
from email.utils import make_msgid

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A port nobody listens on now (Controller(port=0) fails: its start-up probe connects to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SinkHandler:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  bytes(envelope.original_content or envelope.content)))
        return "250 2.0.0 OK"


class Sink:
    """An SMTP server that keeps what it is sent; stop() and start() again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self.controller: Controller | None = None

    def start(self) -> Sink:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        with self.handler.lock:
            return [email.message_from_bytes(raw, policy=email.policy.default)
                    for _, _, raw in self.handler.received]

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        with self.handler.lock:
            return [(sender, rcpts) for sender, rcpts, _ in self.handler.received]


def request(*, sender: str = "ola.nordmann@example.no", name: str = "Ola Nordmann",
            to: str = "kundesenter@branninfo.no", subject: str = "Innsyn",
            body: str = "Hei, jeg vil ha innsyn i alle opplysningene dere har lagret om meg.",
            in_reply_to: str | None = None, references: str | None = None,
            headers: dict[str, str] | None = None, message_id: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="example.no")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg


def send(port: int, msg: EmailMessage, *, sender: str | None = None,
         recipients: list[str] | None = None) -> None:
    envelope_from = sender if sender is not None else str(msg["From"].addresses[0].addr_spec)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(envelope_from, recipients or [str(msg["To"])],
                        msg.as_bytes(policy=email.policy.SMTP))


def reply_to(mail: EmailMessage, body: str, *, sender: str = "ola.nordmann@example.no",
             to: str | None = None) -> EmailMessage:
    """What a mail client makes of 'Reply': threaded under `mail`, its text quoted."""
    quoted = "\n".join("> " + line for line in mail.get_content().splitlines())
    references = " ".join(filter(None, [str(mail.get("References") or ""), str(mail["Message-ID"])]))
    return request(sender=sender, to=to or mail["From"].addresses[0].addr_spec,
                   subject="Re: " + str(mail["Subject"]),
                   body=f"{body}\n\nOn Monday, Branninfo AS wrote:\n{quoted}\n",
                   in_reply_to=str(mail["Message-ID"]), references=references)


CODE = re.compile(r"^\s{4}(\d{6})\s*$", re.M)


def code_in(mail: EmailMessage) -> str:
    found = CODE.search(mail.get_content())
    assert found, "no one-time code in the acknowledgement"
    return found.group(1)
