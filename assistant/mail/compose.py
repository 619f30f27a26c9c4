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
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.mime.text import MIMEText
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
_WIRE = email.policy.compat32.clone(linesep="\r\n", max_line_length=998)


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
    msg = MIMEText(body, "plain", _UTF8_QP)
    msg["From"] = formataddr((from_name or "", from_addr), charset="utf-8")
    msg["To"] = to
    msg["Subject"] = _header(subject)
    _thread_and_mark(msg, message_id=message_id, date=date, parent=parent)
    return msg.as_bytes(policy=_WIRE)


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


def _thread_and_mark(msg: Any, *, message_id: str, date: datetime, parent: Parent | None) -> None:
    """The headers every mail dsr sends carries, whichever way it is encoded: its identity, the
    thread it answers (In-Reply-To, References) and the marks that no auto-responder answers."""
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if parent is not None and parent.message_id:
        msg["In-Reply-To"] = parent.message_id
        msg["References"] = " ".join(thread_references(parent))
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"


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
