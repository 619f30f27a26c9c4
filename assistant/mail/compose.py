"""Outgoing mail as bytes: threaded under the person's message, marked as automatic.

Every mail dsr sends is built here and nowhere else, so each one carries the same promises:
``Auto-Submitted: auto-replied`` (RFC 3834: their auto-responders must not answer it, and our own
intake marks it when it comes back), a ``Message-ID`` in the organisation's domain, and the
thread headers (``In-Reply-To`` = the person's message, ``References`` = its References plus its
Message-ID) with exactly one ``Re:`` and the case reference in the subject, the fallback the
intake matches on when a client drops the headers. Building is pure: nothing here sends.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

from assistant.understand.pii import mask_personal_numbers
from assistant.vocabulary import strip_reply_prefixes

# How many earlier Message-IDs a References header keeps (RFC 5322 suggests trimming long chains;
# the first and the most recent ones matter for threading).
MAX_REFERENCES = 20
_HEADER_SCAN_BYTES = 65_536
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_QP_LINE = 76
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ANY_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Parent:
    """The message we answer: its Message-ID, its References and its subject (masked)."""

    message_id: str | None
    references: tuple[str, ...] = ()
    subject: str = ""


def references_of(raw: bytes) -> tuple[str, ...]:
    """The References header of a raw message (header block only; never raises)."""
    head = raw[:_HEADER_SCAN_BYTES]
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            head = head[:end]
            break
    try:
        msg = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)
        value = " ".join(str(v) for v in msg.get_all("References") or [])
    except Exception:  # noqa: BLE001
        return ()
    return tuple(token for token in value.split() if token.startswith("<") and token.endswith(">"))


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain or None)


def reply_subject(parent_subject: str, fallback: str, ref: str) -> str:
    """'Re: <their subject> [REF]': one Re:, whatever prefixes the thread collected."""
    base = " ".join(strip_reply_prefixes(mask_personal_numbers(parent_subject or "")).split())
    if not base:
        base = " ".join(strip_reply_prefixes(fallback or "").split())
    if ref and ref.upper() not in base.upper():
        base = f"{base} [{ref}]".strip()
    return f"Re: {base}"


def thread_references(parent: Parent) -> list[str]:
    chain = [r for r in parent.references if r != parent.message_id]
    if parent.message_id:
        chain.append(parent.message_id)
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return chain


def _needs_utf8(*addresses: str) -> bool:
    return any(not a.isascii() for a in addresses if a)


def _header(value: str) -> str:
    """A header value as it goes on the wire: RFC 2047 words for anything not ASCII."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=998).encode()


def build(*, from_addr: str, from_name: str, to: str, subject: str, body: str, ref: str,
          message_id: str, date: datetime, parent: Parent | None) -> bytes:
    """The mail as the relay gets it (CRLF line ends; text in UTF-8, quoted-printable).

    Built with the compat32 classes on purpose: the modern header registry parses every header it
    is given again, which made composing the slowest step of the intake worker."""
    if parent is not None and (parent.message_id or parent.subject):
        subject = reply_subject(parent.subject, subject, ref)
    elif ref.upper() not in subject.upper():
        subject = f"{subject} [{ref}]"
    if _needs_utf8(from_addr, to):
        return _build_smtputf8(from_addr=from_addr, from_name=from_name, to=to, subject=subject,
                               body=body, message_id=message_id, date=date, parent=parent)
    fields = [("From", formataddr((_one_line(from_name or ""), from_addr), charset="utf-8")),
              ("To", to), ("Subject", _header(_one_line(subject)))]
    fields += _thread_and_mark_fields(message_id=message_id, date=date, parent=parent)
    return _wire(fields, body)


def _one_line(value: str) -> str:
    """A header value never carries a line break of its own (a decoded subject can: a header
    injection otherwise), nor any other character str.splitlines breaks at (a form feed in a
    display name made the From header read differently once written)."""
    return " ".join(value.splitlines()) if _LINE_BREAKS.search(value) else value


def _wire(fields: list[tuple[str, str]], body: str) -> bytes:
    """The text/plain mail in UTF-8 quoted-printable with its headers, as the email package's
    generator writes it (MIMEText, compat32, CRLF), without its object model: composing the
    receipt was a sixth of the intake worker's cost per message. The values are ASCII here
    (RFC 2047 words for the rest); a References line of many ids is folded between them."""
    lines = ['Content-Type: text/plain; charset="utf-8"', "MIME-Version: 1.0",
             "Content-Transfer-Encoding: quoted-printable"]
    for name, value in fields:
        value = value.replace("\r\n", "\n").replace("\n", "\r\n")  # RFC 2047 folds
        if name == "References" and len(value) > 78 - len("References: "):
            value = "\r\n ".join(value.split())
        lines.append(f"{name}: {value}")
    encoded = _UTF8_QP.body_encode(body) or ""
    text = "\r\n".join(lines) + "\r\n\r\n" + _ANY_LINE_END.sub("\r\n", encoded)
    return text.encode("ascii")


def build_masked(*, body: str, secret: str, mask: str, **fields: Any) -> tuple[bytes, bytes]:
    """The mail as sent, and the copy dsr keeps with `secret` (a one-time code) replaced by
    `mask`, composed once: the copy is the same bytes with the code replaced in the encoded
    body, when every occurrence of it there is whole and the lines stay within quoted-printable's
    76 characters; otherwise the copy is composed again from the masked text."""
    payload = build(body=body, **fields)
    kept = _masked_copy(payload, body, secret, mask)
    if kept is None:
        kept = build(body=body.replace(secret, mask), **fields)
    return payload, kept


def _masked_copy(payload: bytes, body: str, secret: str, mask: str) -> bytes | None:
    head, separator, encoded = payload.partition(b"\r\n\r\n")
    if (not separator or not secret or not secret.isascii()
            or b"\r\nContent-Transfer-Encoding: quoted-printable" not in head):
        return None
    needle = secret.encode("ascii")
    wanted = body.count(secret)
    if wanted == 0 or encoded.count(needle) != wanted or not secret.isalnum():
        return None
    replacement = quoprimime.body_encode(mask.encode("utf-8").decode("latin-1")).encode("ascii")
    masked = encoded.replace(needle, replacement)
    if any(len(line) > _QP_LINE for line in masked.split(b"\r\n")):
        return None
    return head + separator + masked


def _thread_and_mark_fields(*, message_id: str, date: datetime, parent: Parent | None
                            ) -> list[tuple[str, str]]:
    """The headers every mail dsr sends carries, whichever way it is encoded: its identity, the
    thread it answers (In-Reply-To, References) and the marks that no auto-responder answers."""
    fields = [("Date", format_datetime(date)), ("Message-ID", message_id)]
    if parent is not None and parent.message_id:
        fields += [("In-Reply-To", parent.message_id),
                   ("References", " ".join(thread_references(parent)))]
    return fields + [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]


def _thread_and_mark(msg: Any, *, message_id: str, date: datetime, parent: Parent | None) -> None:
    for name, value in _thread_and_mark_fields(message_id=message_id, date=date, parent=parent):
        msg[name] = value


def _build_smtputf8(*, from_addr: str, from_name: str, to: str, subject: str, body: str,
                    message_id: str, date: datetime, parent: Parent | None) -> bytes:
    """An address that is not ASCII (bjørn@eksempel.no) goes out as UTF-8 headers (RFC 6532);
    the relay is asked for SMTPUTF8."""
    msg = EmailMessage()
    msg["From"] = Address(display_name=from_name or "", addr_spec=from_addr)
    msg["To"] = to
    msg["Subject"] = subject
    _thread_and_mark(msg, message_id=message_id, date=date, parent=parent)
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTPUTF8)
