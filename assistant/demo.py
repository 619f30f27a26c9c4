"""`dsr demo`: the whole product on a temporary database, in under a minute, on real servers.

A handful of realistic inquiries (one per seed organisation, with a quoted thread, a typo or
two and a signature) go in through the SMTP listener on a free port; the intake worker opens
the cases and queues the acknowledgements with their one-time codes; the outbox sender delivers
them to a local SMTP sink standing in for the requesters' mailboxes; each requester answers
with the code from their own address; staff settle the erasure checklists and approve; the
threaded replies reach the sink. Every step is printed, so an operator sees what dsr does
before pointing it at a real inbox. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from . import cases, workflow
from .config import Settings
from .service import Service
from .store.db import open_store, session_scope

WAIT_SECONDS = 20.0
CODE_LINE = re.compile(r"^\s{2,}(\d{6,10})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Inquiry:
    to: str
    sender: str
    name: str
    subject: str
    body: str


# What people really send: phone-typed, quoted threads, signatures, other languages.
INQUIRIES: tuple[Inquiry, ...] = (
    Inquiry("kundesenter@branninfo.no", "kari.nordmann@example.no", "Kari Nordmann",
            "SV: Ordre 44812 - brannslukker",
            "Hei\n\nTakk for svar om ordren. Men en ting til: jeg vil vite hvilke opplysninger "
            "dere har lagret om meg, og hvor dere har fått dem fra?\n\nmvh Kari\n\n"
            "Fra: Branninfo Kundesenter <kundesenter@branninfo.no>\nSendt: 2. november 2026\n"
            "Emne: Ordre 44812 - brannslukker\n\nHei Kari, ordren din er sendt i dag.\n"),
    Inquiry("post@bagges.no", "ola.hansen@example.no", "Ola Hansen", "slett meg",
            "hei, vil at dere sletter alt dere har om meg, har ikke kjopt noe pa flere ar. "
            "og slutt a sende meg reklame\n\nSendt fra min iPhone"),
    Inquiry("post@proffsecurity.no", "ingrid@example.no", "Ingrid Berg", "Nyhetsbrev",
            "Vennligst fjern meg fra nyhetsbrevet deres. Takk.\n\n--\nIngrid Berg"),
    Inquiry("personvern@infracomfort.no", "john.smith@example.com", "John Smith",
            "Data request",
            "Hello,\n\nUnder Article 15 GDPR I'd like a copy of the personal data you hold "
            "about me, incl. my service history for the heat pump.\n\nBest regards,\nJohn Smith"),
    Inquiry("personvern@plania.no", "per.nilsen@example.no", "Per Nilsen", "Feil adresse",
            "Hei. Dere har feil adresse på meg i kunderegisteret, riktig er Storgata 12, "
            "0155 Oslo. Kan dere rette det?\n\nPer"),
)


class _SinkHandler:
    """The requesters' mailboxes: keeps every mail dsr sends."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(bytes(envelope.original_content or envelope.content),
                                           policy=email.policy.default)
        with self.lock:
            self.received.append(message)  # type: ignore[arg-type]
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if address in str(m.get("To", ""))]


def free_port() -> int:
    """A free loopback port (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"the demo waited {WAIT_SECONDS:.0f} s for {what}")


def demo_settings(base: Settings, folder: Path, sink_port: int) -> Settings:
    """The operator's settings on a temporary database, sending to the local sink."""
    return base.model_copy(update={
        "database": base.database.model_copy(update={"url": f"sqlite:///{folder}/demo.db"}),
        "outbound": base.outbound.model_copy(update={
            "host": "127.0.0.1", "port": sink_port, "username": None, "password": None,
            "starttls": False, "maildir": str(folder / "outbox")}),
        "imap": None,
    })


class Demo:
    """One run of the demo; `say` prints a step (the CLI passes click.echo)."""

    def __init__(self, base: Settings, say: Callable[[str], None]) -> None:
        self.base = base
        self.say = say

    def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="dsr-demo-") as tmp:
            folder = Path(tmp)
            sink = _SinkHandler()
            sink_port, smtp_port = free_port(), free_port()
            controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
            controller.start()
            settings = demo_settings(self.base, folder, sink_port)
            engine = open_store(settings.database.url)
            service = Service(settings, engine, smtp_port=smtp_port, worker_poll=0.1,
                              sender_poll=0.1, sender_base_delay=0.5)
            service.start()
            try:
                self.say(f"dsr demo: temporary database {folder / 'demo.db'}, SMTP listener "
                         f"127.0.0.1:{smtp_port}, requesters' mailboxes 127.0.0.1:{sink_port}\n")
                for number, inquiry in enumerate(INQUIRIES, 1):
                    self._one(number, inquiry, smtp_port, sink, settings, engine)
                self._summary(engine)
            finally:
                service.stop()
                controller.stop()
                engine.dispose()
        return 0

    # -- one inquiry, end to end ---------------------------------------------------------------

    def _one(self, number: int, inquiry: Inquiry, smtp_port: int, sink: _SinkHandler,
             settings: Settings, engine: Any) -> None:
        self.say(f"{number}. {inquiry.name} <{inquiry.sender}> writes to {inquiry.to}: "
                 f"\"{inquiry.subject}\"")
        first = self._send(smtp_port, inquiry.sender, inquiry.name, inquiry.to, inquiry.subject,
                           inquiry.body)
        ack = wait_for(lambda: next(iter(sink.to(inquiry.sender)), None), "the acknowledgement")
        ref = self._ref_of(engine, first)
        case = self._case(engine, ref)
        self.say(f"   <- acknowledgement \"{ack['Subject']}\" (Auto-Submitted: "
                 f"{ack['Auto-Submitted']}); understood as {', '.join(case['intents']) or 'unclear'}"
                 f" ({case['language']}), due {case['due']}")
        last = first
        if case["state"] == "awaiting_verification":
            self._opt_out_at_once(engine, settings, ref)
            code = self._code(ack)
            self.say(f"   -> {inquiry.name} replies from the same address with the one-time code")
            last = self._send(smtp_port, inquiry.sender, inquiry.name, inquiry.to,
                              f"Re: {ack['Subject']}", f"Koden er {code}\n\n> {ack['Subject']}",
                              in_reply_to=ack["Message-ID"])
            wait_for(lambda: self._case(engine, ref)["verified"], "the verification")
            self.say(f"   {ref} verified (email_code); the reply is drafted for staff")
        else:
            self.say(f"   {ref} needs no ID check ({case['verification_method']}); drafted at once")
        self._staff(engine, settings, ref)
        reply = wait_for(lambda: self._reply(sink, inquiry.sender, last), "the approved reply")
        final = wait_for(lambda: self._case(engine, ref)["state"] == "answered" and
                         self._case(engine, ref), "the case to be answered")
        threaded = reply["In-Reply-To"] == last and last in str(reply.get("References", ""))
        self.say(f"   <- reply \"{reply['Subject']}\", threaded on {inquiry.name}'s last mail: "
                 f"{'yes' if threaded else 'no'}; case {final['state']} on delivery\n")

    def _opt_out_at_once(self, engine: Any, settings: Settings, ref: str) -> None:
        """Art. 21(3): beside a request that waits for ID, marketing stops now."""
        with session_scope(engine) as session:
            case = cases.get_case(session, ref)
            if not self._pending_notice(session, case):
                return
            for item in cases.checklist(session, case, "suppression"):
                workflow.tick(session, settings, ref, "suppression", item.system, "done",
                              "staff (demo)")
                self.say(f"   staff, before any ID check: marketing stopped in {item.system}")
            workflow.approve(session, settings, ref, "staff (demo)")
            self.say("   staff: approved the opt-out confirmation; it goes out now")

    def _staff(self, engine: Any, settings: Settings, ref: str) -> None:
        """What staff do at the desk: settle the erasure checklist, approve the reply."""
        with session_scope(engine) as session:
            case = cases.get_case(session, ref)
            for task in cases.erasure_tasks(session, case):
                if "visma" in task.system.lower() or "regnskap" in task.system.lower():
                    until = date(date.today().year + 5, 12, 31)
                    workflow.settle(session, settings, ref, task.system, "kept", "staff (demo)",
                                    law="bokføringsloven § 13", until=until)
                    self.say(f"   staff: {task.system} kept under bokføringsloven § 13 until {until}")
                else:
                    workflow.settle(session, settings, ref, task.system, "done", "staff (demo)")
                    self.say(f"   staff: {task.system} erased")
            for item in cases.checklist(session, case, "access"):
                workflow.tick(session, settings, ref, "access", item.system, "done", "staff (demo)")
                self.say(f"   staff: {item.system} searched, the person's data collected for the copy")
            for item in cases.checklist(session, case, "suppression"):
                if item.state == "pending":
                    workflow.tick(session, settings, ref, "suppression", item.system, "done",
                                  "staff (demo)")
                    self.say(f"   staff: marketing stopped in {item.system}")
            if "rectification" in json.loads(case.intents):
                workflow.rectify(session, settings, ref, "address in the customer register "
                                 "corrected as asked", "staff (demo)")
                self.say("   staff: recorded the correction (dsr cases rectify)")
        while True:
            with session_scope(engine) as session:
                case = cases.get_case(session, ref)
                if case.state != "drafted" and not self._pending_notice(session, case):
                    break
                pending = cases.pending_draft(session, case)
                workflow.approve(session, settings, ref, "staff (demo)")
                what = "notice" if cases.is_notice(pending.kind, case) else "reply"
                self.say(f"   staff: approved the {pending.kind} {what}")

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _pending_notice(session: Any, case: Any) -> bool:
        from .store.models import Draft

        pending = session.query(Draft).filter(Draft.case_id == case.id,
                                              Draft.state == "pending").all()
        return any(cases.is_notice(d.kind, case) for d in pending)

    @staticmethod
    def _send(port: int, sender: str, name: str, to: str, subject: str, body: str,
              in_reply_to: str | None = None) -> str:
        message = EmailMessage()
        message["From"] = f"{name} <{sender}>"
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=sender.split("@")[1])
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
            message["References"] = in_reply_to
        message.set_content(body)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(message)
        return str(message["Message-ID"])

    @staticmethod
    def _ref_of(engine: Any, message_id: str) -> str:
        def found() -> str | None:
            with session_scope(engine, write=False) as session:
                from .store.models import Case, Message

                row = session.query(Message).filter(Message.message_id == message_id).first()
                if row is None or row.case_id is None:
                    return None
                return session.get(Case, row.case_id).ref
        return wait_for(found, "the case to open")

    @staticmethod
    def _case(engine: Any, ref: str) -> dict[str, Any]:
        with session_scope(engine, write=False) as session:
            return cases.case_summary(cases.get_case(session, ref))

    @staticmethod
    def _code(ack: EmailMessage) -> str:
        body = ack.get_body(preferencelist=("plain",))
        found = CODE_LINE.search(body.get_content() if body else "")
        if found is None:
            raise RuntimeError("the acknowledgement carries no one-time code")
        return found.group(1)

    @staticmethod
    def _reply(sink: _SinkHandler, address: str, last: str) -> EmailMessage | None:
        """The answer: the mail that threads on the person's last message (their code reply,
        or their request when no ID check was needed)."""
        answers = [m for m in sink.to(address) if m["In-Reply-To"] == last]
        return answers[-1] if answers else None

    def _summary(self, engine: Any) -> None:
        with session_scope(engine, write=False) as session:
            found = [cases.case_summary(c) for c in cases.list_cases(session)]
        self.say("Cases:")
        for case in found:
            intents = ",".join(case["intents"]) or "unclear"
            self.say(f"  {case['ref']}  {case['org']:<14} {intents:<24} {case['state']:<10} "
                     f"due {case['due']}  verified: {case['verification_method']}")
