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
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ..store.models import Message, utcnow

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


# -- many at once: the SMTP listener's group commit ----------------------------------------------


@dataclass(frozen=True)
class Arrived:
    """One message as a channel received it, not yet stored."""

    raw: bytes
    received_at: datetime
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()


_MESSAGES = Message.__table__


def _row(channel: str, item: Arrived, now: datetime) -> dict[str, object]:
    if item.received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    mid = message_id_of(item.raw)
    digest = hashlib.sha256(item.raw).hexdigest()
    return {
        "dedup_key": f"{mid or '-'}:{digest}"[:512], "channel": channel, "direction": "in",
        "raw": item.raw, "sha256": digest, "message_id": mid, "received_at": item.received_at,
        "envelope_from": (item.envelope_from or None) and item.envelope_from[:320],
        "envelope_to": json.dumps([address.lower() for address in item.envelope_to]),
        "status": STATUS_STORED, "created_at": now,
    }


def store_batch(connection: Connection, channel: str,
                items: Sequence[Arrived]) -> list[tuple[int, bool]]:
    """Insert every message not yet stored, in the caller's transaction, with one statement
    (``INSERT … ON CONFLICT (dedup_key) DO NOTHING RETURNING``); (row id, whether it is new)
    per item, in order. Already stored (a retry, the same mail twice in the batch, or another
    instance that stored it first) is not an error. The caller commits, then acknowledges."""
    now = utcnow()
    rows = [_row(channel, item, now) for item in items]
    first: dict[str, int] = {}  # dedup key -> index of its first item in this batch
    unique = []
    for index, row in enumerate(rows):
        if first.setdefault(row["dedup_key"], index) == index:  # type: ignore[arg-type]
            unique.append(row)
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = (insert(_MESSAGES).on_conflict_do_nothing(index_elements=[_MESSAGES.c.dedup_key])
                 .returning(_MESSAGES.c.id, _MESSAGES.c.dedup_key))
    created = {key: id_ for id_, key in connection.execute(statement, unique).all()}
    missing = [key for key in first if key not in created]
    earlier: dict[str, int] = {}
    if missing:
        earlier = dict(connection.execute(
            select(_MESSAGES.c.dedup_key, _MESSAGES.c.id).where(_MESSAGES.c.dedup_key.in_(missing))
        ).all())
    results: list[tuple[int, bool]] = []
    for index, row in enumerate(rows):
        key = row["dedup_key"]
        if key in created:
            results.append((created[key], first[key] == index))  # type: ignore[index]
        else:
            results.append((earlier[key], False))  # type: ignore[index]
    return results


# SQLite's own driver, for the listener's storing thread: the same insert as `store_batch`
# without SQLAlchemy's per-statement work (a third of the listener's cost per message). The
# values are bound with the columns' own SQLAlchemy bind processors, so they are stored exactly
# as the ORM stores them.
_SQLITE_COLUMNS = ("dedup_key", "channel", "direction", "raw", "sha256", "message_id",
                   "received_at", "envelope_from", "envelope_to", "status", "created_at")


def is_busy(exc: BaseException) -> bool:
    """SQLite said the write lock is taken (SQLITE_BUSY / SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteBatchStore:
    """`store_batch` on one kept DB-API connection (SQLite only; one thread at a time uses it).

    `wait=False` makes a connection that never waits for the write lock (busy timeout 0: the
    caller is the event loop, which must not block; it hands the batch to a storing thread
    instead) and never checkpoints the WAL itself (`checkpoint` is called from that thread).
    """

    def __init__(self, engine: Engine, *, wait: bool = True) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("SqliteBatchStore is for SQLite")
        self.engine, self.wait = engine, wait
        self._connection: Any = None
        self._processors = [(name, _MESSAGES.c[name].type._cached_bind_processor(engine.dialect))
                            for name in _SQLITE_COLUMNS]
        columns = ", ".join(_SQLITE_COLUMNS)
        self._insert = (f"INSERT INTO messages ({columns}) VALUES "
                        f"({', '.join('?' for _ in _SQLITE_COLUMNS)})"
                        " ON CONFLICT (dedup_key) DO NOTHING")
        self._lookup = "SELECT id FROM messages WHERE dedup_key = ?"

    def _bound(self, row: dict[str, object]) -> tuple[object, ...]:
        return tuple(processor(row[name]) if processor is not None else row[name]
                     for name, processor in self._processors)

    def _driver(self) -> Any:
        if self._connection is None:
            connection = self.engine.raw_connection()
            if not self.wait:
                try:
                    connection.driver_connection.execute("PRAGMA busy_timeout=0")
                    connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
                except BaseException:
                    connection.invalidate()
                    raise
            self._connection = connection
        return self._connection.driver_connection

    def store(self, channel: str, items: Sequence[Arrived]) -> list[tuple[int, bool]]:
        """Insert and COMMIT; (row id, new) per item, in order. On any error the transaction is
        rolled back and the error raised: nothing of the batch is kept (`is_busy` tells a
        caller that did not wait that the lock was taken).

        Few calls into the driver, each of which lets other threads run (the GIL): a batch of
        one is a single autocommitted statement (atomic by itself); a larger batch is
        BEGIN IMMEDIATE, one statement per message, COMMIT."""
        now = utcnow()
        rows = [_row(channel, item, now) for item in items]
        dbapi = self._driver()
        alone = len(rows) == 1
        try:
            if not alone:
                dbapi.execute("BEGIN IMMEDIATE")
            seen: dict[object, int] = {}
            results: list[tuple[int, bool]] = []
            for row in rows:
                key = row["dedup_key"]
                if key in seen:
                    results.append((seen[key], False))
                    continue
                cursor = dbapi.execute(self._insert, self._bound(row))
                if cursor.rowcount == 1:
                    seen[key] = cursor.lastrowid
                    results.append((cursor.lastrowid, True))
                    continue
                # fetchall: the statement runs to its end. A SELECT left open would keep the
                # autocommit connection in a transaction, and the next insert uncommitted.
                earlier = dbapi.execute(self._lookup, (key,)).fetchall()
                if not earlier:
                    raise LookupError("a stored message vanished while it was being stored")
                seen[key] = earlier[0][0]
                results.append((earlier[0][0], False))
            if not alone:
                dbapi.execute("COMMIT")
            return results
        except BaseException as exc:
            try:
                if dbapi.in_transaction:
                    dbapi.execute("ROLLBACK")
            except BaseException:  # noqa: BLE001
                self.close(broken=True)
                raise exc from None
            if not is_busy(exc):
                self.close(broken=True)
            raise

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as no reader needs it (never waits)."""
        self._driver().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self, broken: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if broken or not self.wait:  # never hand a changed connection back to the pool
                connection.invalidate()
            connection.close()
        except Exception:  # noqa: BLE001
            pass
