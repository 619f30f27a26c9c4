"""The audit trail as hash chains: one per case, and one for the events that belong to no case.

The triggers refuse UPDATE and DELETE on `events`, but whoever owns the database can switch
them off (DROP TRIGGER on SQLite, DISABLE TRIGGER on PostgreSQL). The chain makes such an edit
visible afterwards: each event stores `prev_hash`, the hash of the event before it in its
chain, and `hash`, SHA-256 over a canonical form of (case id, at, actor, kind, detail,
prev_hash). A changed event no longer matches its hash; a removed one breaks the link of the
next; and because the chain's head (`audit_chains`: count and newest hash) is kept beside it,
removing the newest event, which leaves no broken link, shows as well.

Appends are serialised per chain: the head row is locked (SELECT ... FOR UPDATE on
PostgreSQL; on SQLite every write transaction already holds the write lock), so two processes
writing to one case still make one straight line.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy import event as orm_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from . import bulk
from .models import AuditChain, Case, Event, utcnow

# json.dumps with these options builds an encoder per call, which cost more than the hash.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
GENESIS = "0" * 64  # the prev_hash of the first event of every chain
_FORMAT = "dsr-audit-v1"  # part of every hashed form, so a future format cannot collide
NO_CASE = "none"


def chain_key(case_id: int | None) -> str:
    return f"case:{case_id}" if case_id is not None else NO_CASE


def canonical_at(at: datetime) -> str:
    """`at` as hashed: UTC with microseconds, the precision both databases keep."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(case_id: int | None, at: datetime, actor: str, kind: str, detail: str,
               prev_hash: str) -> str:
    """SHA-256 over a JSON array of the fields: unambiguous, whatever text the fields hold."""
    return _digest(case_id, canonical_at(at), actor, kind, detail, prev_hash)


def _digest(case_id: int | None, at_text: str, actor: str, kind: str, detail: str,
            prev_hash: str) -> str:
    form = [_FORMAT, case_id, at_text, actor, kind, detail, prev_hash]
    data = _CANONICAL.encode(form).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def hash_of(event: Event) -> str:
    return event_hash(event.case_id, event.at, event.actor, event.kind, event.detail,
                      event.prev_hash or "")


# -- appending ----------------------------------------------------------------------------------


_HEADS = "dsr_audit_heads"  # session.info: chain -> (count, newest hash), locked by this transaction


def _lock_head(session: Session, case_id: int | None) -> tuple[int, str]:
    """The chain's count and newest hash, with its row locked until the transaction ends;
    the row is created on the chain's first event. Once locked, the head is remembered for the
    rest of the transaction (nobody else can move it), and forgotten on any rollback."""
    key = chain_key(case_id)
    heads = session.info.setdefault(_HEADS, {})
    if key in heads:
        return heads[key]
    table = AuditChain.__table__
    # On the session's connection, in its transaction, but without the ORM's autoflush: the
    # trail's statements touch no mapped object, and each flush cost more than the statement.
    connection = session.connection()
    created = connection.execute(_new_head(connection.dialect.name), {
        "chain": key, "case_id": case_id, "events": 0, "last_hash": GENESIS})
    if created.rowcount == 1:  # a new chain, locked by our insert
        head = (0, GENESIS)
    else:
        row = connection.execute(
            select(table.c.events, table.c.last_hash).where(table.c.chain == key).with_for_update()
        ).one()
        head = (row.events, row.last_hash)
    heads[key] = head
    return head


@lru_cache(maxsize=4)
def _new_head(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_CHAINS).on_conflict_do_nothing(index_elements=[_CHAINS.c.chain])


@orm_event.listens_for(OrmSession, "after_soft_rollback")
def _forget_heads_on_rollback(session: OrmSession, _transaction: object) -> None:
    session.info.pop(_HEADS, None)
    moved = session.info.get(_MOVED)
    if moved is not None:  # see heads_moved_once
        moved[_ROLLED_BACK] = True


@orm_event.listens_for(OrmSession, "after_transaction_end")
def _forget_heads_at_end(session: OrmSession, transaction: object) -> None:
    if getattr(transaction, "parent", None) is None:  # the outermost: its locks are gone
        session.info.pop(_HEADS, None)


_EVENTS = Event.__table__
_CHAINS = AuditChain.__table__


def append_event(session: Session, case_id: int | None, actor: str, kind: str,
                 detail: str) -> int | None:
    """Add one event at the end of its chain and move the chain's head to it; the event's id,
    or None inside `heads_moved_once`, where the events are written together at its end.

    Written with two plain statements (the event row, the head), not through the ORM: the
    audit trail is append-only, nothing reads the event back in this transaction, and the
    ORM's bookkeeping was most of an event's cost. The case row exists already (its id does)."""
    count, last_hash = _lock_head(session, case_id)
    at = utcnow()
    digest = event_hash(case_id, at, actor, kind, detail, last_hash)
    key = chain_key(case_id)
    moved = session.info.get(_MOVED)
    if moved is not None:
        if moved.get(_ROLLED_BACK):
            raise RuntimeError("audit: a rollback inside heads_moved_once; the chain heads are unknown")
        session.info.setdefault(_HEADS, {})[key] = (count + 1, digest)
        moved[key] = (count + 1, digest)  # written once, when `heads_moved_once` ends
        session.info[_WAITING].append((case_id, at, actor, kind, detail, last_hash, digest))
        return None
    connection = session.connection()
    event_id = connection.execute(_INSERT_EVENT, {
        "case_id": case_id, "at": at, "actor": actor, "kind": kind, "detail": detail,
        "prev_hash": last_hash, "hash": digest}).scalar_one()
    session.info.setdefault(_HEADS, {})[key] = (count + 1, digest)
    _write_head(connection, key, count + 1, digest)
    return event_id


_EVENT_COLUMNS = ("case_id", "at", "actor", "kind", "detail", "prev_hash", "hash")
_IN_LIST = 5000  # chain keys per IN list: well under either database's limit on parameters


def _lock_heads(session: Session, keys: dict[str, int | None]) -> dict[str, tuple[int, str]]:
    """The heads of many chains (key -> case id), each locked until the transaction ends, in
    a few statements: the existing rows locked in key order (SELECT ... ORDER BY chain FOR
    UPDATE on PostgreSQL, so two writers take the heads they share in the same order; the
    sweep also holds each case's row first, which keeps two sweeps off one chain), then the
    missing ones created (ON CONFLICT DO NOTHING, in key order), and any that another
    transaction created meanwhile locked as well. On SQLite the write transaction holds the
    file lock."""
    table = _CHAINS
    connection = session.connection()
    ordered = sorted(keys)
    heads: dict[str, tuple[int, str]] = {}

    lock = " FOR UPDATE" if connection.dialect.name == "postgresql" else ""

    def lock_existing(wanted: list[str]) -> None:
        for start in range(0, len(wanted), _IN_LIST):
            keys_in, params = bulk.member(connection, table.c.chain,
                                          wanted[start:start + _IN_LIST])
            rows = connection.exec_driver_sql(
                "SELECT chain, events, last_hash FROM audit_chains WHERE"
                f" {keys_in} ORDER BY chain{lock}", params).fetchall()
            heads.update((chain, (events, last_hash)) for chain, events, last_hash in rows)

    lock_existing(ordered)
    missing = [k for k in ordered if k not in heads]
    if missing:
        created = bulk.insert_returning(
            connection, table, ("chain", "case_id", "events", "last_hash"),
            [(k, keys[k], 0, GENESIS) for k in missing], conflict=("chain",),
            returning=("chain",))
        heads.update((k, (0, GENESIS)) for (k,) in created)
        lock_existing([k for k in missing if k not in heads])  # created by another meanwhile
    return heads


def append_events(session: Session, items: list[tuple[int | None, str, str, str]]) -> int:
    """Add many events, each at the end of its chain in the order given, as `append_event`
    would one by one (the same canonical form and hash, so `dsr audit verify` cannot tell them
    apart), in a handful of statements: the heads of all the chains involved locked at once,
    the events inserted in one statement, the heads moved in another (store/bulk.py).
    `items` are (case id or None, actor, kind, detail JSON), masked and checked by the caller
    as for `append_event`. They are written in one transaction and carry one `at`, the clock
    when they are appended. Returns the number of events written."""
    if not items:
        return 0
    if session.info.get(_MOVED) is not None:
        # The block would write its own remembered heads at its end, over these.
        raise RuntimeError("audit: append_events inside heads_moved_once")
    heads = session.info.setdefault(_HEADS, {})
    wanted = {chain_key(case_id): case_id for case_id, *_ in items}
    fresh = {k: v for k, v in wanted.items() if k not in heads}
    moved = {k: heads[k] for k in wanted if k in heads}
    if fresh:
        moved.update(_lock_heads(session, fresh))
        heads.update((k, moved[k]) for k in fresh)  # locked now, whatever happens below
    at = utcnow()
    at_text = canonical_at(at)
    rows = []
    for case_id, actor, kind, detail in items:
        key = chain_key(case_id)
        count, last_hash = moved[key]
        digest = _digest(case_id, at_text, actor, kind, detail, last_hash)
        rows.append((case_id, at, actor, kind, detail, last_hash, digest))
        moved[key] = (count + 1, digest)
    connection = session.connection()
    bulk.insert_many(connection, _EVENTS, _EVENT_COLUMNS, rows)
    bulk.update_many(connection, _CHAINS, ("events", "last_hash"), "chain",
                     [(count, newest, k) for k, (count, newest) in moved.items()])
    heads.update(moved)
    return len(rows)


def _write_head(connection: Any, key: str, events: int, last_hash: str) -> None:
    connection.execute(_MOVE_HEAD, {"key": key, "events": events, "last_hash": last_hash})


# Built once (a statement built per call cost more to compile-cache than to run).
_INSERT_EVENT = _EVENTS.insert().returning(_EVENTS.c.id)
_MOVE_HEAD = (update(_CHAINS).where(_CHAINS.c.chain == bindparam("key"))
              .values(events=bindparam("events"), last_hash=bindparam("last_hash")))


_MOVED = "dsr_audit_moved"  # session.info: chain -> head, written at the end of the block
_WAITING = "dsr_audit_waiting"  # session.info: the block's event rows, in the order appended
_ROLLED_BACK = ""  # a key no chain has: set in the block's table when a savepoint in it rolled back


@contextmanager
def heads_moved_once(session: Session) -> Iterator[None]:
    """Inside the block the events are written together at its end, in the order appended
    (one statement), and a chain's head row once, instead of a statement or two per event (the
    intake worker: a new case appends four or five events in a row). The head is still locked
    at the chain's first event and each event hashed when appended; on an exception nothing is
    written (the caller's savepoint or transaction rolls back, and the remembered heads are
    forgotten with it). Code that reads the trail inside the block calls `write_waiting`."""
    if session.info.get(_MOVED) is not None:  # nested: the outer block writes
        yield
        return
    moved: dict[str, Any] = {}
    session.info[_MOVED] = moved
    session.info[_WAITING] = []
    session.info.setdefault(_HEADS, {})
    try:
        yield
        if moved.pop(_ROLLED_BACK, False):
            # A savepoint inside the block rolled back: which events remain is not known here,
            # so nothing is written and the caller's transaction must not commit this block.
            raise RuntimeError("audit: a rollback inside heads_moved_once; the chain heads are unknown")
        write_waiting(session)
        if moved:
            connection = session.connection()
            for key in sorted(moved):
                _write_head(connection, key, *moved[key])
    finally:
        session.info.pop(_MOVED, None)
        session.info.pop(_WAITING, None)


def write_waiting(session: Session) -> None:
    """The events appended so far inside `heads_moved_once`, written now (a reader of the trail
    inside the block would not see them otherwise); nothing outside a block."""
    waiting = session.info.get(_WAITING)
    if waiting:
        bulk.insert_many(session.connection(), _EVENTS, _EVENT_COLUMNS, waiting)
        waiting.clear()


# -- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first place a chain does not match: which case, which event, and what is wrong."""

    ref: str | None
    case_id: int | None
    event_id: int | None
    problem: str  # changed | removed | reordered | added
    message: str


@dataclass
class TrailReport:
    events: int = 0
    cases: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"intact": self.intact, "events": self.events, "cases": self.cases,
                "problems": [asdict(p) for p in self.problems]}


def _walk(events: list[Event]) -> tuple[str, Event | None, str] | None:
    """The first broken link in the events of one chain, in the order they were written, as
    (problem, event, message); None when every event matches its hash and follows its
    predecessor."""
    expected = GENESIS
    hashes = {e.hash for e in events}
    for event in events:
        if hash_of(event) != event.hash:
            return "changed", event, f"event {event.id} ({event.kind}) was changed: it no longer matches its hash"
        if event.prev_hash != expected:
            if event.prev_hash in hashes:
                return "reordered", event, f"event {event.id} ({event.kind}) is out of order: it does not follow the event before it"
            return "removed", event, f"an event before event {event.id} ({event.kind}) is missing (removed)"
        expected = event.hash or ""
    return None


def _check_head(events: list[Event], head: AuditChain | None) -> tuple[str, Event | None, str] | None:
    """Compare the chain with its head: catches removal of the newest events, which leaves no
    broken link behind."""
    last = events[-1] if events else None
    if head is None:
        if last is None:
            return "removed", None, "the case has no events at all: its audit trail was removed"
        return "removed", last, "the record of the chain's length and newest hash is missing (removed)"
    if len(events) < head.events:
        after = f"after event {last.id}" if last is not None else "(all of them)"
        return ("removed", last,
                f"{head.events - len(events)} newest event(s) {after} are missing (removed)")
    if len(events) > head.events:
        extra = events[head.events]
        return "added", extra, f"event {extra.id} ({extra.kind}) was added outside dsr: the chain's record ends before it"
    if (last.hash if last is not None else GENESIS) != head.last_hash:
        return "changed", last, "the newest event does not match the chain's record of its hash (replaced)"
    return None


def check_chain(events: list[Event], head: AuditChain | None) -> tuple[str, Event | None, str] | None:
    """The first problem of one chain, or None when it is intact."""
    return _walk(events) or _check_head(events, head)


def verify_trail(session: Session) -> TrailReport:
    """Check every chain: each case's (also a case with no events left) and the case-less one.
    On PostgreSQL the reads share one snapshot (REPEATABLE READ), so an event appended while we
    read is not mistaken for a gap; on SQLite a read transaction is a snapshot already."""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    by_chain: dict[str, list[Event]] = defaultdict(list)
    for event in session.execute(select(Event).order_by(Event.id)).scalars():
        by_chain[chain_key(event.case_id)].append(event)
    heads = {h.chain: h for h in session.execute(select(AuditChain)).scalars()}
    refs = {chain_key(cid): (cid, ref) for cid, ref in session.execute(select(Case.id, Case.ref).order_by(Case.id))}
    report = TrailReport(events=sum(len(v) for v in by_chain.values()), cases=len(refs))
    keys = list(refs) + sorted((set(by_chain) | set(heads)) - set(refs))
    for key in keys:
        found = check_chain(by_chain.get(key, []), heads.get(key))
        if found is not None:
            problem, event, message = found
            case_id, ref = refs.get(key, (_case_id_of(key), None))
            report.problems.append(Problem(ref=ref, case_id=case_id,
                                           event_id=event.id if event is not None else None,
                                           problem=problem, message=message))
    return report


def _case_id_of(key: str) -> int | None:
    return int(key.split(":", 1)[1]) if key.startswith("case:") else None
