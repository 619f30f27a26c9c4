"""Outgoing mail is written without the email package's object model (it was a sixth of the
intake worker's cost per message); what a mail client reads from it must be exactly what the
email package's own MIMEText would have given: every header, decoded, and the text."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone
from email.charset import QP, Charset
from email.mime.text import MIMEText
from email.utils import formataddr

from hypothesis import example, given, settings
from hypothesis import strategies as st

from assistant.mail import compose

_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP
_WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


def _by_the_email_package(fields: dict, body: str, parent: compose.Parent | None) -> bytes:
    """How compose.build wrote a mail before: MIMEText, compat32, CRLF."""
    msg = MIMEText(body, "plain", _UTF8)
    msg["From"] = formataddr((fields["from_name"], fields["from_addr"]), charset="utf-8")
    msg["To"] = fields["to"]
    msg["Subject"] = compose._header(fields["subject"])
    compose._thread_and_mark(msg, message_id=fields["message_id"], date=_WHEN, parent=parent)
    return msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n", max_line_length=998))


def _read(raw: bytes) -> tuple[dict, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {name: " ".join(str(msg[name]).split()) for name in msg.keys()}
    return headers, msg.get_content()


def _both(subject: str, name: str, body: str, refs: tuple[str, ...]) -> tuple[bytes, bytes]:
    parent = compose.Parent("<parent@example.no>", refs, "") if refs is not None else None
    fields = {"from_addr": "personvern@branninfo.no", "from_name": name, "to": "ola@example.no",
              "subject": subject, "message_id": "<ack.1@branninfo.no>"}
    ours = compose.build(body=body, ref="DSR-2026-0001", date=_WHEN, parent=None, **fields) \
        if parent is None else compose.build(body=body, ref="DSR-2026-0001", date=_WHEN,
                                             parent=parent, **fields)
    # The subject compose.build settles on (reference added), given to the old way as is.
    fields["subject"] = _read(ours)[0]["Subject"]
    return ours, _by_the_email_package(fields, body, parent)


def test_a_receipt_reads_as_the_email_package_would_write_it() -> None:
    ours, theirs = _both("Innsyn – mine opplysninger", "Branninfo AS personvern",
                         "Hei Åse,\n\nVi har mottatt henvendelsen din.\nKode: 482913\n", ())
    assert _read(ours) == _read(theirs)
    assert b"\r\n" in ours and b"\n" not in ours.replace(b"\r\n", b"")


def test_a_long_thread_is_folded_and_keeps_every_reference() -> None:
    refs = tuple(f"<message.{n}.with.a.long.id@mail.example.com>" for n in range(30))
    ours, theirs = _both("Re: sletting", "Branninfo", "Svar.\n", refs)
    assert _read(ours) == _read(theirs)
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))


def test_a_line_break_inside_a_decoded_subject_cannot_add_a_header() -> None:
    ours = compose.build(from_addr="personvern@branninfo.no", from_name="Bran\nninfo",
                         to="ola@example.no", subject="Hei\r\nBcc: evil@example.com",
                         body="x", ref="DSR-2026-0001", message_id="<a@branninfo.no>",
                         date=_WHEN, parent=None)
    msg = email.message_from_bytes(ours, policy=email.policy.default)
    assert msg["Bcc"] is None and "evil@example.com" in str(msg["Subject"])


@settings(max_examples=150, deadline=None)
@given(subject=st.text(min_size=1, max_size=200), name=st.text(max_size=60),
       body=st.text(max_size=2_000),
       refs=st.none() | st.lists(st.from_regex(r"<[a-z0-9.]{1,40}@[a-z]{1,20}\.no>", fullmatch=True),
                                 max_size=25).map(tuple))
@example(subject="0", name="\x0c", body="", refs=None)  # a form feed for a name (found by it)
def test_any_text_reads_the_same_both_ways(subject: str, name: str, body: str,
                                           refs: tuple[str, ...] | None) -> None:
    subject, name = compose._one_line(subject), compose._one_line(name)
    ours, theirs = _both(subject, name, body, refs)
    assert _read(ours) == _read(theirs)
