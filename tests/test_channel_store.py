"""Storing what arrived: exactly once per message, whatever retries or channels deliver it."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from assistant.channels.store import dedup_key, message_id_of, store_raw
from assistant.store.db import open_store, session_scope
from assistant.store.models import Message

RAW = (b"From: Kari <kari@example.no>\r\nTo: kundesenter@branninfo.no\r\n"
       b"Message-ID:\r\n <abc.123@example.no>\r\nSubject: Innsyn\r\n\r\nJeg vil ha innsyn.\r\n")
NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def count(engine) -> int:
    with session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(Message)).scalar_one()


def test_the_message_id_is_read_from_the_header_block_only():
    assert message_id_of(RAW) == "<abc.123@example.no>"
    assert message_id_of(b"Subject: x\n\nMessage-ID: <in-body@x>\n") is None
    assert dedup_key(RAW).startswith("<abc.123@example.no>:")
    assert dedup_key(b"Subject: none\n\nbody").startswith("-:")


def test_a_retried_message_is_stored_once(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path}/dsr.db")
    for attempt in range(3):
        with session_scope(engine) as session:
            row, new = store_raw(session, channel="smtp", raw=RAW, received_at=NOW,
                                 envelope_from="kari@example.no",
                                 envelope_to=["Kundesenter@Branninfo.no"])
            assert new == (attempt == 0)
            assert row.raw == RAW and row.status == "stored"
    assert count(engine) == 1


def test_same_message_id_with_other_bytes_is_another_message(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path}/dsr.db")
    with session_scope(engine) as session:
        store_raw(session, channel="smtp", raw=RAW, received_at=NOW)
        _, new = store_raw(session, channel="imap", raw=RAW + b"P.S.\r\n", received_at=NOW)
        assert new
    assert count(engine) == 2
