"""The intake worker: every stored message, oldest first, decided through `workflow`.

Channels store raw mail and acknowledge; this worker does the rest from the stored row, so a
crash loses nothing: a message is claimed and handled in ONE transaction, and if the process
dies half-way the transaction rolls back and the row is `stored` again for the next run.

Claiming: one statement, ``UPDATE messages SET status='processing' WHERE id = (SELECT the oldest
stored) AND status='stored' RETURNING id``. On PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP
LOCKED``, so several workers (several instances) each get a different row without waiting; on
SQLite the UPDATE takes the database's write lock first, so the next worker waits and then finds
the row no longer `stored`. Either way a message is handled by one worker at a time.

For each message: parse (never raises); auto-replies, bounces and list mail are marked and never
answered; the organisation is found by the envelope recipients, then To/Cc; a follow-up joins its
case (Message-ID seen before, In-Reply-To, References newest first, a case reference in the
subject or body); a message the classifier is sure is no request (no request cue in any
language, or an order confirmation, a newsletter, phishing) joins the sender's open case there
if they have one, else is kept and marked `ignored` with `auto = not-a-request`, without a case
or a receipt (`dsr messages` lists them and opens a case from one); anything else, a request or
possibly one, opens a case through `workflow.open_request`, which queues the acknowledgement.
A message that fails is marked `failed` with the error's class (never its text, which may quote
the mail) and kept for a person; the worker goes on with the next.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from . import cases, preparer, workflow
from .config import Organization, Settings
from .mail.parse import ParsedMail, parse_mail
from .store import audit
from .store import gate as write_gate
from .store.db import session_scope
from .store.models import Case, Message, utcnow
from .understand.pii import mask_personal_numbers
from .understand.pipeline import understand_text
from .vocabulary import NOT_A_REQUEST, Channel

# Ids, references and outcomes only: never an address, a subject or a body.
log = logging.getLogger("dsr.intake")

STORED, PROCESSING, PROCESSED = "stored", "processing", "processed"
IGNORED, DUPLICATE, FAILED = "ignored", "duplicate", "failed"
MAX_SUBJECT_CHARS = 2_000
MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class Outcome:
    message: int  # the messages row id
    status: str  # processed | ignored | duplicate | failed
    outcome: str  # opened | linked | verified | intent_added | auto:<reason> | error:<class> …
    ref: str | None = None
    error: str | None = None  # the error's module and class, when it failed


# -- claiming -----------------------------------------------------------------------------------


def claim_next(session: Session) -> Message | None:
    """Claim the oldest stored incoming message for this transaction, or None."""
    postgres = session.get_bind().dialect.name == "postgresql"
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    row = session.execute(text(
        "UPDATE messages SET status = :processing WHERE status = :stored AND id = ("
        # The queue's condition written out, not bound: only then may either database's
        # planner use the partial index ix_messages_queue (models.Message) for it.
        f" SELECT id FROM messages WHERE {preparer.QUEUED} AND direction = 'in'"
        f" ORDER BY received_at, id LIMIT 1{lock}) RETURNING id"
    ), {"processing": PROCESSING, "stored": STORED}).first()
    if row is None:
        return None
    return session.get(Message, row[0], populate_existing=True)


# -- routing and linking ------------------------------------------------------------------------


def route(settings: Settings, message: Message, mail: ParsedMail) -> tuple[Organization | None, str | None]:
    """The organisation and the address of it the mail was sent to: envelope first (what the
    SMTP client said), then To and Cc (what IMAP and imported mail have)."""
    return _route(settings, message.envelope_to, mail)


def _route(settings: Settings, envelope_to: str | None, mail: ParsedMail
           ) -> tuple[Organization | None, str | None]:
    envelope = json.loads(envelope_to or "[]")
    for address in list(envelope) + list(mail.to) + list(mail.cc):
        org = settings.organization_for_address(address)
        if org is not None:
            return org, address.lower()
    return None, None


def _case_by_message_id(session: Session, message_id: str, exclude: int) -> Case | None:
    """The case of the oldest other message with this Message-ID. Asked without a flush first:
    what this worker wrote for earlier messages is flushed already (each message's savepoint
    ends with one), and the message in hand, still unflushed, is the one excluded."""
    if not message_id:
        return None
    row = session.connection().execute(
        _BY_MESSAGE_ID, {"message_id": message_id[:998], "exclude": exclude}).first()
    if row is None:
        return None
    with session.no_autoflush:
        return session.get(Case, row[0])


_BY_MESSAGE_ID = (
    select(Message.case_id)
    .where(Message.message_id == bindparam("message_id"), Message.id != bindparam("exclude"),
           Message.case_id.is_not(None))
    .order_by(Message.id).limit(1)
)


def _follow_up(session: Session, settings: Settings, case: Case, how: str, message: Message,
               mail: ParsedMail, requester: str | None, moment: datetime) -> Outcome:
    """The message joins `case` (found by `how`) through workflow.follow_up."""
    result = workflow.follow_up(session, settings, case, message, from_address=requester,
                                subject=mail.subject, body=mail.text, full_text=mail.full_text,
                                now=moment)
    message.status = PROCESSED
    session.add(message)
    return Outcome(message.id, PROCESSED, f"linked:{how}:{result}", case.ref)


def _requester(message: Message, mail: ParsedMail) -> str | None:
    return mail.from_addr or (message.envelope_from or "").lower() or None


def _open(session: Session, settings: Settings, org: Organization, message: Message,
          mail: ParsedMail, requester: str | None, moment: datetime, *, understood: Any = None,
          intents: list[str] | None = None, actor: str = "dsr") -> Case:
    """The message's case, received when the mail reached us; imported mail gets its receipt
    only while still within its deadline (workflow.acknowledge_backfilled)."""
    backfilled = message.channel == Channel.IMPORT.value
    case = workflow.open_request(
        session, settings, org_id=org.id, channel="email", received_at=message.received_at,
        requester=requester, requester_name=mail.from_name or None, subject=mail.subject,
        body=mail.text, intents=intents, actor=actor, message=message,
        acknowledge=not backfilled, now=moment, understood=understood)
    if backfilled:
        workflow.acknowledge_backfilled(session, settings, case, now=moment, message=message)
    return case


def _open_case_of(session: Session, org_id: str, requester: str | None) -> Case | None:
    """The newest case of this organisation still open for this requester's address."""
    if not requester:
        return None
    with session.no_autoflush:
        return session.execute(
            select(Case).where(Case.org == org_id, Case.requester == requester,
                               Case.state.not_in(tuple(cases.FINISHED_STATES)))
            .order_by(Case.id.desc()).limit(1)).scalars().first()


def reference_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(prefix)}-(\d{{4}})-(\d{{4,}})(?![0-9])", re.I)


def find_case(session: Session, settings: Settings, message: Message, mail: ParsedMail,
              org: Organization | None) -> tuple[Case | None, str]:
    """The case this mail follows up, and how it was found (FIELD-NOTES order; a Message-ID seen
    before is handled by `handle` as a duplicate)."""
    parent = _case_by_message_id(session, mail.in_reply_to, message.id)
    if parent is not None:
        return parent, "in_reply_to"
    for reference in reversed(mail.references[-50:]):
        found = _case_by_message_id(session, reference, message.id)
        if found is not None:
            return found, "references"
    pattern = reference_pattern(settings.cases.reference_prefix)
    for source in (mail.subject, mail.text):
        for match in pattern.finditer(source or ""):
            ref = f"{settings.cases.reference_prefix}-{match.group(1)}-{match.group(2)}"
            with session.no_autoflush:  # as in _case_by_message_id
                case = session.execute(select(Case).where(Case.ref == ref.upper())).scalars().first()
            if case is not None and (org is None or case.org == org.id):
                return case, "reference"
    return None, ""


# -- one message --------------------------------------------------------------------------------


def handle(session: Session, settings: Settings, message: Message,
           now: datetime | None = None, prepared: Prepared | None = None) -> Outcome:
    """Decide one claimed message (inside the caller's transaction); `prepared`: the parsing
    and classifying already done from the same stored bytes, before the transaction."""
    moment = now or utcnow()
    mail = prepared.mail if prepared is not None else parse_mail(message.raw)
    message.subject = mask_personal_numbers(mail.subject)[:MAX_SUBJECT_CHARS] or None
    message.text = mail.text[:MAX_TEXT_CHARS]
    message.processed_at = moment
    if not message.message_id and mail.message_id:
        message.message_id = mail.message_id[:998]
    org, _address = route(settings, message, mail)
    if mail.auto:
        # Stored and marked, never answered; joined to its case when it threads under one, so
        # staff see a bounce of our acknowledgement beside the case.
        message.auto = mail.auto[:64]
        message.status = IGNORED
        linked = _case_by_message_id(session, mail.in_reply_to, message.id)
        if linked is not None:
            message.case_id = linked.id
        session.add(message)
        return Outcome(message.id, IGNORED, f"auto:{message.auto}", linked.ref if linked else None)
    if message.message_id:
        earlier = _case_by_message_id(session, message.message_id, message.id)
        if earlier is not None:
            # The same mail by a second road (SMTP and IMAP), or our own mail come back.
            message.case_id, message.status = earlier.id, DUPLICATE
            session.add(message)
            return Outcome(message.id, DUPLICATE, "duplicate", earlier.ref)
    case, how = find_case(session, settings, message, mail, org)
    requester = _requester(message, mail)
    if case is not None:
        return _follow_up(session, settings, case, how, message, mail, requester, moment)
    if org is None:
        message.status, message.error = FAILED, "unrouted: no organisation address among the recipients"
        session.add(message)
        return Outcome(message.id, FAILED, "unrouted")
    if requester is not None and settings.organization_for_address(requester) is not None:
        # Our own address as the sender: never answer ourselves.
        message.status, message.auto = IGNORED, "own-address"
        session.add(message)
        return Outcome(message.id, IGNORED, "auto:own-address")
    understood = prepared.understood(org) if prepared is not None else None
    if understood is None:
        understood = understand_text(mail.text, subject=mail.subject, default_language=org.language)
    if not understood.possible_request:
        # Certainly no new data-subject request (an order, a delivery notice, a newsletter
        # footer, phishing, nothing that reads as a request in any language). From someone with
        # an open case here it joins that case, threaded or not ("har dere fått ID-en min?"),
        # so staff see it; otherwise it is kept without a case or a receipt, and `dsr messages`
        # lists it and opens a case from it when a person judges otherwise.
        open_case = _open_case_of(session, org.id, requester)
        if open_case is not None:
            return _follow_up(session, settings, open_case, "sender", message, mail, requester,
                              moment)
        message.status, message.auto = IGNORED, NOT_A_REQUEST
        session.add(message)
        return Outcome(message.id, IGNORED, f"auto:{NOT_A_REQUEST}")
    case = _open(session, settings, org, message, mail, requester, moment, understood=understood)
    message.status = PROCESSED
    session.add(message)
    return Outcome(message.id, PROCESSED, "opened", case.ref)


def set_aside(session: Session, *, reason: str | None = NOT_A_REQUEST, limit: int = 100
              ) -> list[Message]:
    """Incoming messages that opened no case, newest first: those the classifier was sure
    asked for nothing (`reason` not-a-request), or with `reason=None` every ignored and
    failed one (auto-replies, our own address, unrouted, broken), for a person to look over."""
    query = select(Message).where(Message.direction == "in", Message.case_id.is_(None))
    if reason is None:
        query = query.where(Message.status.in_((IGNORED, FAILED)))
    else:
        query = query.where(Message.status == IGNORED, Message.auto == reason)
    return list(session.execute(query.order_by(Message.id.desc()).limit(limit)).scalars())


def sender_of(message: Message) -> str | None:
    """The From address of a stored message (headers only), else the SMTP envelope sender:
    imported and IMAP mail has no envelope sender."""
    headers = BytesHeaderParser().parsebytes(bytes(message.raw))
    try:
        found = [address for _, address in getaddresses(headers.get_all("From", [])) if "@" in address]
    except (TypeError, ValueError, IndexError):
        found = []
    return (found[0].lower() if found else None) or message.envelope_from


def open_from_message(session: Session, settings: Settings, message_id: int, actor: str,
                      intents: list[str] | None = None, now: datetime | None = None) -> Case:
    """A person judged a set-aside message a request after all: its case opens as if the
    worker had opened it (the deadline runs from when the mail reached us, the requester gets
    the receipt), with the intents the person named or else as unclear."""
    message = session.get(Message, message_id)
    if message is None or message.direction != "in":
        raise cases.CaseNotFound(f"no incoming message {message_id}")
    if message.case_id is not None:
        raise cases.CaseError(f"message {message_id} already belongs to a case")
    if message.status not in (IGNORED, FAILED):
        raise cases.CaseError(f"message {message_id} is {message.status}: the worker decides it")
    mail = parse_mail(message.raw)
    org, _address = route(settings, message, mail)
    if org is None:
        raise cases.CaseError(f"message {message_id} was not sent to any organisation's address")
    moment = now or utcnow()
    case = _open(session, settings, org, message, mail, _requester(message, mail), moment,
                 intents=intents or None, actor=actor)
    cases.record_event(session, case, actor, "opened_from_message", message=message.id,
                       set_aside_as=message.auto or message.status)
    message.status, message.processed_at = PROCESSED, moment
    session.add(message)
    return case


# -- batches ------------------------------------------------------------------------------------
#
# Several messages share one transaction (one commit), each inside its own savepoint: a message
# that fails is rolled back alone and marked `failed` in the same transaction, the others keep
# their work. A batch ends after BATCH_MESSAGES, after BATCH_SECONDS, or as soon as the SMTP
# listener waits for the write gate (its clients wait for their 250). On SQLite the parsing and
# classifying happen BEFORE the write lock (from the stored bytes, read without a lock), so the
# lock is held only for the writes; the claim is then a compare-and-set (`stored` ->
# `processing`), and a message another worker took meanwhile is skipped. On PostgreSQL rows are
# claimed first (FOR UPDATE SKIP LOCKED, so workers never wait for or duplicate each other) and
# parsed inside the transaction, which locks nobody else out.

BATCH_MESSAGES = 32
BATCH_SECONDS = 0.1


@dataclass
class Prepared:
    """A stored message parsed (and, when it may open a case, classified) ahead of its claim."""

    id: int
    mail: ParsedMail
    _understood: dict[str, Any]

    def understood(self, org: Organization) -> Any:
        return self._understood.get(org.id)


def prepare(settings: Settings, message_id: int, raw: bytes, envelope_to: str | None) -> Prepared:
    """The pure work for one message: parse, and classify for the organisation it would open a
    case with (what `workflow.open_request` would compute itself)."""
    mail = parse_mail(raw)
    understood: dict[str, Any] = {}
    if not mail.auto:
        org, _ = _route(settings, envelope_to, mail)
        if org is not None:
            understood[org.id] = understand_text(mail.text, subject=mail.subject,
                                                 default_language=org.language)
    return Prepared(message_id, mail, understood)


def _prepare_next(engine: Engine, settings: Settings, limit: int) -> list[Prepared | int]:
    """The oldest stored messages, read without a lock and prepared; an id alone where
    preparing failed (the message is then handled, and fails, in its savepoint)."""
    return preparer.prepare_rows(settings, preparer.stored_rows(engine, limit))


def _claim(session: Session, message_id: int) -> Message | None:
    """Compare-and-set: the message is ours if it is still `stored`."""
    # One statement: the row comes back from the UPDATE itself (RETURNING every column).
    return session.execute(_CLAIM, {"processing": PROCESSING, "stored": STORED, "claimed": message_id},
                           execution_options={"populate_existing": True}).scalars().first()


_CLAIM = select(Message).from_statement(
    update(Message.__table__)
    .where(Message.__table__.c.id == bindparam("claimed"),
           Message.__table__.c.status == bindparam("stored"))
    .values(status=bindparam("processing"))
    .returning(*Message.__table__.c)
)


def _write_message(session: Session, message: Message) -> None:
    """What `handle` changed on the message, written with one plain UPDATE (masked as the
    store's flush hook masks it); the object then leaves the session, so the savepoint's end
    flushes only what else changed (often nothing). Nothing reads it as an object again."""
    state = sa_inspect(message)
    changed = [key for key in state.committed_state if key in _MESSAGE_COLUMNS]
    if changed:
        values = {key: cases.stored_text(getattr(message, key)) for key in changed}
        values["_message"] = message.id
        session.connection().execute(_update_message(tuple(sorted(changed))), values)
    session.expunge(message)


_MESSAGE_COLUMNS = frozenset(column.key for column in sa_inspect(Message).column_attrs) - {"id"}


@lru_cache(maxsize=64)
def _update_message(columns: tuple[str, ...]) -> Any:
    table = Message.__table__
    return (update(table).where(table.c.id == bindparam("_message"))
            .values({column: bindparam(column) for column in columns}))


def _handle_alone(session: Session, settings: Settings, message: Message, now: datetime | None,
                  prepared: Prepared | None) -> Outcome:
    """One message in its own savepoint; a failure is rolled back alone and marked failed."""
    message_id = message.id
    assert message_id is not None
    try:
        # The events of one message move each case's chain head once, at its end.
        with session.begin_nested(), audit.heads_moved_once(session):
            outcome = handle(session, settings, message, now=now, prepared=prepared)
            _write_message(session, message)
            return outcome
    except OperationalError:
        raise  # the database itself: the whole batch rolls back, every message stays stored
    except Exception as exc:  # noqa: BLE001
        reason = failure_reason(exc)
        session.execute(text(
            "UPDATE messages SET status = :failed, error = :error, processed_at = :at WHERE id = :id"
        ), {"failed": FAILED, "error": reason[:500], "id": message_id,
            "at": datetime.now(timezone.utc).replace(tzinfo=None)})
        return Outcome(message_id, FAILED, f"error:{type(exc).__name__}", error=reason)


def failure_reason(exc: BaseException) -> str:
    """What a person needs to find why a message failed, and nothing from the message: the
    error's class, the database's error code (SQLSTATE, or SQLite's error name) and where in
    dsr it was raised. Never the error's text, which may quote the mail or a statement's values."""
    reason = f"{type(exc).__module__}.{type(exc).__name__}"
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    if code:
        reason += f" [{code}]"
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}assistant{os.sep}" in f.filename]
    if ours:
        where = ours[-1]
        reason += f" at {where.filename.rsplit(os.sep + 'assistant' + os.sep, 1)[-1]}:{where.lineno}"
    return reason


def process_batch(engine: Engine, settings: Settings, now: datetime | None = None,
                  gate: write_gate.WriteGate | None = None, limit: int = BATCH_MESSAGES,
                  ahead: list[Prepared | int] | None = None) -> tuple[list[Outcome], bool]:
    """Claim and decide up to `limit` stored messages in one transaction; (the outcomes, whether
    any message was waiting). Raised to the caller: a database that is busy or gone (every
    message of the batch stays `stored`). `ahead` (SQLite): messages prepared earlier; the ones
    this batch does not reach are left in it for the next."""
    postgres = engine.dialect.name == "postgresql"
    waiting: list[Prepared | int] = []
    if not postgres:
        waiting = ahead if ahead else _prepare_next(engine, settings, limit)
        if not waiting:
            return [], False
    outcomes: list[Outcome] = []
    found = bool(waiting)
    started = time.monotonic()
    reached = 0  # SQLite: how many of `waiting` this batch took up
    with write_gate.background(gate), session_scope(engine) as session:
        while reached < limit:
            if reached and (time.monotonic() - started > BATCH_SECONDS
                            or (gate is not None and gate.contended())):
                break
            prepared: Prepared | None = None
            if postgres:
                message = claim_next(session)
                if message is None:
                    break
                found = True
                reached += 1
            else:
                if reached >= len(waiting):
                    break
                item = waiting[reached]
                reached += 1
                prepared = item if isinstance(item, Prepared) else None
                message = _claim(session, preparer.item_id(item))
                if message is None:  # another worker has it
                    continue
            outcomes.append(_handle_alone(session, settings, message, now, prepared))
    if ahead is not None:
        # What this batch did not reach, for the next one (a message another worker finished
        # meanwhile is then skipped by its claim); empty: the next batch reads afresh.
        ahead[:] = waiting[reached:]
    for outcome in outcomes:  # after the commit: never an outcome that was rolled back
        if outcome.status == FAILED and outcome.error:
            log.warning("message failed", extra={"message_id": outcome.message,
                                                 "error": outcome.error})
        log.info("message %s", outcome.status, extra={
            "message_id": outcome.message, "ref": outcome.ref, "outcome": outcome.outcome})
    return outcomes, found


def process_one(engine: Engine, settings: Settings, now: datetime | None = None,
                gate: write_gate.WriteGate | None = None) -> Outcome | None:
    """Claim and decide the oldest stored message in its own transaction; None when none waits.

    A database that is busy or gone leaves the message `stored` (raised to the caller, who
    waits and tries again); any other error marks it `failed` with the error's class."""
    while True:
        outcomes, found = process_batch(engine, settings, now=now, gate=gate, limit=1)
        if outcomes:
            return outcomes[0]
        if not found:
            return None


def drain(engine: Engine, settings: Settings, limit: int | None = None,
          stop: threading.Event | None = None, gate: write_gate.WriteGate | None = None,
          ahead_by: preparer.Preparer | None = None,
          flow: write_gate.Flow | None = None) -> int:
    """Process stored messages until none is left (or `limit`, or `stop`); how many were done.
    `ahead_by` (SQLite): prepares the next batch in a second process while this one is written.
    `flow`: the worker's watch on the listener (store/gate.py), kept from one drain to the next."""
    done = 0
    ahead: list[Prepared | int] = []
    if engine.dialect.name != "sqlite":
        ahead_by = None  # PostgreSQL claims first and prepares inside its transaction
    flow = flow if flow is not None else write_gate.Flow(gate)
    while limit is None or done < limit:
        if stop is not None and stop.is_set():
            break
        if flow.give_way(stop):  # the SMTP listener first in a flood (store/gate.py)
            continue
        size = BATCH_MESSAGES if limit is None else min(BATCH_MESSAGES, limit - done)
        if ahead_by is not None:
            ahead = ahead_by.next_batch(engine, ahead, size)
        outcomes, found = process_batch(engine, settings, gate=gate, limit=size, ahead=ahead)
        if not found:
            break
        done += len(outcomes)
    return done


class Worker:
    """Runs `drain` until stopped; a channel that stored something may `wake` it early."""

    def __init__(self, engine: Engine, settings: Settings, poll_seconds: float = 1.0,
                 retry_seconds: float = 2.0, gate: write_gate.WriteGate | None = None) -> None:
        self.engine, self.settings, self.gate = engine, settings, gate
        self.poll_seconds, self.retry_seconds = poll_seconds, retry_seconds
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; the message in hand is finished first (its transaction commits).
        On SQLite with more than one core, a backlog is prepared a batch ahead in a second
        process (preparer.py)."""
        ahead_by = (preparer.Preparer(self.settings)
                    if self.engine.dialect.name == "sqlite" and (os.cpu_count() or 1) > 1 else None)
        try:
            self._run(stop, ahead_by)
        finally:
            if ahead_by is not None:
                ahead_by.close()

    def _run(self, stop: threading.Event, ahead_by: preparer.Preparer | None) -> None:
        flow = write_gate.Flow(self.gate)
        while not stop.is_set():
            self._wake.clear()
            try:
                drain(self.engine, self.settings, stop=stop, gate=self.gate, ahead_by=ahead_by,
                      flow=flow)
            except OperationalError as exc:
                log.warning("database unavailable; retrying", extra={"error": type(exc.orig).__name__
                                                                    if exc.orig else "OperationalError"})
                stop.wait(self.retry_seconds)
                continue
            except Exception as exc:  # noqa: BLE001
                log.error("worker step failed", extra={"error": type(exc).__name__})
                stop.wait(self.retry_seconds)
                continue
            if stop.is_set():
                break
            self._wake.wait(self.poll_seconds)
