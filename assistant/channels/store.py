"""Store a raw message exactly once, whatever channel it came by.

A message is keyed by its Message-ID plus a SHA-256 of its bytes: Message-ID alone is not unique
in the wild (broken clients reuse it), and the hash alone would store the same mail twice when a
retry differs by one header. The key is unique in the database, so two instances, or a sender that
retries after a lost 250, cannot store it twice: the second insert finds the first row.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ..store.models import Message

# Only the header block is searched for the Message-ID, and only this much of it: the full
# parse (with its costs on hostile mail) happens later, in the worker.
_HEADER_SCAN_BYTES = 65_536
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]{1,900}>)", re.I | re.M)
STATUS_STORED = "stored"


def header_block(raw: bytes) -> bytes:
    """The bytes before the first empty line (or the first 64 KB)."""
    head = raw[:_HEADER_SCAN_BYTES]
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            return head[:end]
    return head


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID header's value (with its angle brackets), if there is a usable one."""
    found = _MESSAGE_ID.search(header_block(raw))
    if found is None:
        return None
    return found.group(1).decode("ascii", "replace")


def dedup_key(raw: bytes, message_id: str | None = None) -> str:
    """Message-ID plus the hash of the bytes; '-' stands in for a missing Message-ID."""
    digest = hashlib.sha256(raw).hexdigest()
    mid = message_id if message_id is not None else message_id_of(raw)
    return f"{mid or '-'}:{digest}"


def store_raw(
    session: Session, *, channel: str, raw: bytes, received_at: datetime,
    envelope_from: str | None = None, envelope_to: Iterable[str] = (),
) -> tuple[Message, bool]:
    """Insert the raw message unless it is already stored; (row, True) when it is new.

    The caller commits, then acknowledges. A duplicate is not an error: the sender retried,
    or the same mail came by two channels, and it is already ours."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    mid = message_id_of(raw)
    key = dedup_key(raw, mid)
    existing = _by_key(session, key)
    if existing is not None:
        return existing, False
    message = Message(
        dedup_key=key[:512], channel=channel, direction="in", raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(), message_id=mid, received_at=received_at,
        envelope_from=(envelope_from or None) and envelope_from[:320],
        envelope_to=json.dumps([address.lower() for address in envelope_to]),
        status=STATUS_STORED,
    )
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:  # another instance stored it between our look and our insert
        session.expunge(message)
        existing = _by_key(session, key)
        if existing is None:
            raise
        return existing, False
    return message, True


def _by_key(session: Session, key: str) -> Message | None:
    return session.execute(select(Message).where(Message.dedup_key == key[:512])).scalars().first()
