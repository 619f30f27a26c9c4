"""The case engine: references, the state machine, staff actions and the audit trail.

Every decision about a case lives here, whatever channel the request came by; Slack, email and
the CLI only call these functions. Each change of a case writes an event with its actor in the
same transaction, so the audit trail and the case can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import event as orm_event
from sqlalchemy import inspect as orm_inspect
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session

from . import deadlines
from .config import Settings
from .deadlines import OSLO, Calendar, compute_deadlines, receipt_date
from .logs import get_logger
from .store.audit import append_event, append_events, write_waiting
from .store.models import (
    Case,
    CaseCounter,
    ChecklistItem,
    Draft,
    ErasureTask,
    Event,
    Message,
    utcnow,
)
from .understand.pii import mask_personal_numbers
from .vocabulary import STAFF_VERIFICATION_METHODS, EventKind, Intent, VerificationMethod
from .vocabulary import STATES as STATES  # re-exported: the states, as `dsr cases list --state`

# The only moves a case can make; anything else is refused with a reason.
TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"awaiting_verification", "verified", "rejected", "closed"}),
    "awaiting_verification": frozenset({"verified", "rejected", "closed"}),
    "verified": frozenset({"drafted", "awaiting_verification", "rejected", "closed"}),
    "drafted": frozenset({"approved", "verified", "drafted", "awaiting_verification", "rejected",
                          "closed"}),
    "approved": frozenset({"answered", "drafted", "closed"}),
    "answered": frozenset({"closed", "drafted", "awaiting_verification"}),
    "closed": frozenset({"received", "awaiting_verification", "verified"}),
    "rejected": frozenset({"received", "awaiting_verification", "verified", "closed"}),
}
FINISHED_STATES = frozenset({"answered", "closed", "rejected"})
VERIFICATION_METHODS = STAFF_VERIFICATION_METHODS  # what staff may record; see vocabulary
# Intents whose answer discloses nothing about the person: acting on them needs no ID check.
NO_DISCLOSURE_INTENTS = frozenset({Intent.OPT_OUT.value, Intent.QUESTION.value})

# Logged: references, states, event kinds, ids, organisation ids, systems. Never the requester's
# address or name, nor any reason, note or text staff typed (they may quote the person).
log = get_logger("cases")
# An event's detail as stored (keys sorted), and as plain JSON types; built once, because
# json.dumps with options builds an encoder per call.
_STORED = json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=True)
_PLAIN = json.JSONEncoder(ensure_ascii=False, default=str)


class CaseError(Exception):
    """An action the engine refuses; the text is the reason shown to staff (CLI exit 1)."""


class CaseNotFound(CaseError):
    pass


# -- references --------------------------------------------------------------------------------


def allocate_reference(session: Session, prefix: str, year: int) -> tuple[str, int]:
    """Next reference for prefix and year, atomically: the upsert row lock serialises creators,
    so two processes on PostgreSQL (or two writers on SQLite) never get the same number."""
    connection = session.connection()  # the counter is no mapped object: nothing to flush first
    seq = connection.execute(_allocate_statement(connection.dialect.name),
                             {"prefix": prefix, "year": year, "last": 1}).scalar_one()
    return format_reference(prefix, year, seq), seq


@lru_cache(maxsize=4)
def _allocate_statement(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = CaseCounter.__table__
    return (
        insert(table)
        .on_conflict_do_update(
            index_elements=[table.c.prefix, table.c.year], set_={"last": table.c.last + 1}
        )
        .returning(table.c.last)
    )


def format_reference(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}-{year}-{seq:04d}"


# -- events -----------------------------------------------------------------------------------


def masked(value: Any) -> Any:
    """Personal numbers out of any text staff or senders typed, inside lists and tables too.
    The audit trail is append-only: a number written there could never be erased."""
    if isinstance(value, str):
        return mask_personal_numbers(value)
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def record_event(
    session: Session, case: Case | None, actor: str, kind: str, **detail: Any
) -> int | None:
    """Append to the audit trail. Detail never holds message bodies; every text in it and the
    actor are masked here, before anything (the hash chain, a log line) is derived from them.
    The event joins its case's hash chain (store/audit.py), so a later edit shows. Returns the
    event's id (None inside `audit.heads_moved_once`, which writes its events at its end)."""
    detail = masked(json.loads(_PLAIN.encode(detail)))
    return append_event(
        session,
        case.id if case is not None else None,
        masked(actor),
        EventKind(kind).value,  # ValueError for a kind the vocabulary lacks
        _STORED.encode(detail),
    )


def record_events(session: Session, events: Iterable[tuple[int | None, str, str, dict[str, Any]]]
                  ) -> int:
    """Many events at once, (case id or None, actor, kind, detail) each, masked and checked
    exactly as `record_event` does, then appended in a few statements (store/audit.py
    `append_events`: the same chains and hashes as one by one). Returns how many."""
    seen: dict[str, str] = {}  # a sweep's details repeat their texts: each masked once
    kinds: dict[str, str] = {}

    def text(value: str) -> str:
        clean = seen.get(value)
        if clean is None:
            clean = seen[value] = mask_personal_numbers(value)
        return clean

    def mask(value: Any) -> Any:
        """The value masked, if JSON would give it back unchanged (text, integers, booleans,
        None, and lists and string-keyed objects of those); else _NOT_PLAIN. One pass: a
        sweep writes ten thousand of these."""
        kind = type(value)
        if kind is str:
            return text(value)
        if value is None or kind is int or kind is bool:
            return value
        if kind is dict:
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    return _NOT_PLAIN
                out[key] = clean = text(item) if type(item) is str else mask(item)
                if clean is _NOT_PLAIN:
                    return _NOT_PLAIN
            return out
        if kind is list:
            items = [mask(item) for item in value]
            return _NOT_PLAIN if any(item is _NOT_PLAIN for item in items) else items
        return _NOT_PLAIN

    rows = []
    for case_id, actor, kind, detail in events:
        clean = mask(detail)
        if clean is _NOT_PLAIN:  # a date, a tuple, a float: as JSON gives it back
            clean = mask(json.loads(_PLAIN.encode(detail)))
        if kind not in kinds:
            kinds[kind] = EventKind(kind).value  # ValueError for a kind the vocabulary lacks
        rows.append((case_id, text(actor), kinds[kind], _STORED.encode(clean)))
    return append_events(session, rows)


_NOT_PLAIN = object()  # record_events: a detail JSON would change (a date, a tuple, a float)


# Events are masked in record_event (before their hash is taken); every other table is masked
# here, on its way to the database, whichever code path set the text.
_MASKED_TABLES = (Case, Draft, ErasureTask, Message)


@orm_event.listens_for(OrmSession, "before_flush")
def _mask_stored_text(session: OrmSession, _context: Any, _instances: Any) -> None:
    """No personal number reaches a stored text column, from staff input or from a mail."""
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, _MASKED_TABLES):
            continue
        state = orm_inspect(obj)
        for attr in state.mapper.column_attrs:
            value = getattr(obj, attr.key, None)
            if isinstance(value, str) and any(ch.isdigit() for ch in value):
                if obj in session.dirty and not state.attrs[attr.key].history.has_changes():
                    continue
                clean = mask_personal_numbers(value)
                if clean != value:
                    setattr(obj, attr.key, clean)


def stored_text(value: Any) -> Any:
    """A value as `_mask_stored_text` lets it reach a masked table."""
    if isinstance(value, str):
        return mask_personal_numbers(value)  # returns the same object when nothing is masked
    return value


def insert_row(session: Session, obj: Any, *, attach: bool = True,
               unique: str | None = None) -> int | None:
    """Write a new row with one plain INSERT on the session's connection, without a flush of the
    unit of work (the intake worker's hot path: each flush cost more than its statement); the
    row's id. Texts of the masked tables are masked here as `_mask_stored_text` would mask them
    at a flush. `attach`: the object joins the session as if loaded, so later changes to it
    are flushed as usual; else it is left alone (nothing reads it again). `unique`: a column
    with a unique index; a row that already has the value is left as it is (ON CONFLICT DO
    NOTHING) and None is returned."""
    mapper = orm_inspect(type(obj))
    table = mapper.local_table
    clean_texts = isinstance(obj, _MASKED_TABLES)
    values: dict[str, Any] = {}
    for attr in mapper.column_attrs:
        if attr.key == "id":
            continue
        value = getattr(obj, attr.key)
        if clean_texts:
            clean = stored_text(value)
            if clean is not value:
                setattr(obj, attr.key, clean)
            value = clean
        values[attr.columns[0].name] = value
    connection = session.connection()
    statement = _insert_returning_id(table, unique, connection.dialect.name)
    row_id = connection.execute(statement, values).scalar()
    if row_id is None:
        return None
    obj.id = row_id
    if attach:
        make_transient_to_detached(obj)
        session.add(obj)
    return int(row_id)


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """New rows of one table, given as column values (the columns' defaults fill the rest), in
    one plain statement: for rows nothing in the session reads back as objects. Texts of the
    masked tables are masked as `_mask_stored_text` would mask them."""
    if not rows:
        return
    if issubclass(model, _MASKED_TABLES):
        rows = [{key: stored_text(value) for key, value in row.items()} for row in rows]
    table = model.__table__
    if len(rows) == 1:
        session.connection().execute(table.insert(), rows[0])
    else:
        session.connection().execute(table.insert(), rows)


@lru_cache(maxsize=64)
def _insert_returning_id(table: Any, unique: str | None, dialect: str) -> Any:
    if unique is None:
        return table.insert().returning(table.c.id)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(table).on_conflict_do_nothing(index_elements=[table.c[unique]])
            .returning(table.c.id))


def _move(session: Session, case: Case, to_state: str, actor: str, kind: str, **detail: Any) -> None:
    allowed = TRANSITIONS.get(case.state, frozenset())
    if to_state not in allowed:
        raise CaseError(f"case {case.ref} is {case.state}; it cannot become {to_state}")
    previous = case.state
    case.state = to_state
    case.updated_at = utcnow()
    session.add(case)
    record_event(session, case, actor, kind, **{"from": previous, "to": to_state}, **detail)
    log.info("case moved", extra={"ref": case.ref, "event": kind, "from_state": previous,
                                  "to_state": to_state})


# -- opening ------------------------------------------------------------------------------------


def _calendar(settings: Settings) -> Calendar:
    c = settings.cases
    try:
        return _calendar_of(c.holiday_country, c.holiday_subdiv, tuple(c.extra_closed_dates))
    except TypeError:  # closed dates that cannot be a cache key: built afresh
        return Calendar(c.holiday_country, c.holiday_subdiv, c.extra_closed_dates)


@lru_cache(maxsize=32)
def _calendar_of(country: str, subdiv: str | None, extra_closed: tuple[Any, ...]) -> Calendar:
    """One Calendar per setting: building one asks `holidays` for the country's table (a third
    of a millisecond), and every case opened needs it."""
    return Calendar(country, subdiv, extra_closed)


def _set_deadlines(case: Case, settings: Settings, start: datetime | None) -> None:
    """Fill the due dates from the start of the clock, or leave them unknown."""
    case.clock_start = start
    if start is None:
        case.legal_due = case.promised_due = case.due = None
        case.extension_notice_by = case.extended_due = None
        return
    promise = settings.organization(case.org).promise_days
    d = compute_deadlines(start, promise, _calendar(settings))
    case.legal_due, case.promised_due = d.legal_due, d.promised_due
    case.extension_notice_by, case.extended_due = d.extension_notice_by, d.extended_due
    case.due = d.extended_due if case.extended else d.due


def _clock_start(settings: Settings, received_at: datetime,
                 verified_at: datetime | None) -> datetime | None:
    """When the case's clock starts, by deadlines.clock_start: the one rule, applied with the
    organisation's cases.verification_clock setting."""
    # Given datetimes, clock_start returns one of them (or None).
    return cast("datetime | None",
                deadlines.clock_start(received_at, verified_at, settings.cases.verification_clock))


def needs_verification(intents: Iterable[str], settings: Settings) -> bool:
    """Only what discloses or changes the person's data waits for ID: an opt-out (stopping
    marketing to the address that asked, Art. 21(3)), a question about the policy and an unclear
    message (we ask what they want) disclose nothing and are answered at once."""
    labels = set(intents)
    if not labels:
        return False
    if Intent.OPT_OUT.value in labels and not settings.cases.opt_out_skips_verification:
        return True
    return not labels <= NO_DISCLOSURE_INTENTS


def open_case(
    session: Session,
    settings: Settings,
    *,
    org_id: str,
    channel: str,
    received_at: datetime,
    requester: str | None,
    requester_name: str | None = None,
    intents: Iterable[str] = (),
    language: str | None = None,
    unclear: bool = False,
    actor: str = "dsr",
) -> Case:
    """Open a case with its reference and due dates, then route it to verification or past it."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    org = settings.organization(org_id)
    labels = list(dict.fromkeys(intents))
    year = receipt_date(received_at).year
    ref, seq = allocate_reference(session, settings.cases.reference_prefix, year)
    case = Case(
        ref=ref,
        prefix=settings.cases.reference_prefix,
        year=year,
        seq=seq,
        org=org.id,
        state="received",
        intents=json.dumps(labels),
        language=language or org.language,
        unclear=unclear,
        requester=requester.strip().lower() if requester else None,
        requester_name=requester_name,
        channel=channel,
        received_at=received_at.astimezone(timezone.utc),
    )
    # Nobody is verified yet: the clock starts now only if it runs from receipt.
    _set_deadlines(case, settings, _clock_start(settings, received_at, None))
    opened_due = case.due
    # The case goes on at once to verification or past it (received -> awaiting_verification |
    # verified, both in TRANSITIONS): the row is written once, in the state it leaves this
    # function in, and the trail records the opening and the move as before.
    verify = needs_verification(labels, settings)
    if verify:
        case.state = "awaiting_verification"
    else:
        case.verification_method = VerificationMethod.NOT_REQUIRED.value
        if case.clock_start is None:  # nothing to verify: as if verified on receipt
            _set_deadlines(case, settings, _clock_start(settings, received_at, received_at))
        case.state = "verified"
    case.updated_at = utcnow()
    insert_row(session, case)
    session.info.setdefault(_NEW_CASES, {})[case.id] = set()
    record_event(
        session, case, actor, "opened", channel=channel, org=org.id, intents=labels,
        language=case.language, due=opened_due,
    )
    log.info("case opened", extra={"ref": case.ref, "org": org.id, "channel": channel,
                                   "intents": labels, "unclear": unclear, "language": case.language,
                                   "due": opened_due})
    # The move's event and log line, as `_move` writes them.
    if verify:
        record_event(session, case, actor, "verification_requested",
                     **{"from": "received", "to": case.state})
    else:
        record_event(session, case, actor, "verification_skipped",
                     **{"from": "received", "to": case.state},
                     reason="answering discloses no personal data (an opt-out, a question or an unclear message)")
    log.info("case moved", extra={"ref": case.ref, "event": ("verification_requested" if verify
                                                            else "verification_skipped"),
                                  "from_state": "received", "to_state": case.state})
    if "erasure" in labels:
        create_erasure_tasks(session, case, org.systems, actor, new_case=True)
    return case


# session.info: the cases opened in the session's transaction, each with what has been written
# for it since (a checklist kind, "drafts"). Such a case has nothing else yet, so what would look
# for one of its rows need not ask the database (nor flush the session first).
_NEW_CASES = "dsr_new_cases"


def opened_here(session: Session, case: Case) -> bool:
    """Was the case opened in this transaction?"""
    return case.id in session.info.get(_NEW_CASES, {})


def first_for_new_case(session: Session, case: Case, what: str) -> bool:
    """True when `case` was opened in this transaction and nothing of `what` was written for it
    yet; from then on `what` counts as written."""
    written = session.info.get(_NEW_CASES, {}).get(case.id)
    if written is None or what in written:
        return False
    written.add(what)
    return True


@orm_event.listens_for(OrmSession, "after_transaction_end")
def _forget_new_cases(session: OrmSession, transaction: Any) -> None:
    # Forgotten at the end of the outermost transaction, and on any rollback (a case opened in
    # a savepoint that rolled back no longer exists; a stale id could only be reused later).
    if getattr(transaction, "parent", None) is None:
        session.info.pop(_NEW_CASES, None)


@orm_event.listens_for(OrmSession, "after_soft_rollback")
def _forget_new_cases_on_rollback(session: OrmSession, _transaction: Any) -> None:
    session.info.pop(_NEW_CASES, None)


def create_erasure_tasks(session: Session, case: Case, systems: Iterable[str], actor: str,
                        new_case: bool = False) -> None:
    """`new_case`: the case was opened in this transaction; its rows are written at once with
    plain statements (nothing in the session can hold one of them)."""
    systems = list(systems)
    if new_case and first_for_new_case(session, case, "erasure_tasks"):
        insert_rows(session, ErasureTask, [{"case_id": case.id, "system": system}
                                           for system in systems])
    else:
        for system in systems:
            session.add(ErasureTask(case_id=case.id, system=system))
    record_event(session, case, actor, "erasure_checklist", systems=list(systems))
    log.info("erasure checklist created", extra={"ref": case.ref, "systems": list(systems)})


# -- lookups ------------------------------------------------------------------------------------


def get_case(session: Session, ref: str, *, for_update: bool = False) -> Case:
    """The case by reference. `for_update` is for an action: the row is locked (PostgreSQL; on
    SQLite the write transaction already holds the database lock) and re-read, never taken
    from the session's cache, so the action checks the state it is about to change."""
    statement = select(Case).where(Case.ref == ref.strip().upper())
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    case = session.execute(statement).scalar_one_or_none()
    if case is None:
        raise CaseNotFound(f"no case with reference {ref!r}")
    return case


def list_cases(
    session: Session, *, state: str | None = None, org: str | None = None,
    assignee: str | None = None,
) -> list[Case]:
    statement = select(Case)
    if state:
        statement = statement.where(Case.state == state)
    if org:
        statement = statement.where(Case.org == org)
    if assignee:
        statement = statement.where(Case.assignee == " ".join(assignee.split()))
    return list(session.execute(statement.order_by(Case.received_at, Case.id)).scalars())


# -- staff actions ------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return now.astimezone(timezone.utc) if now is not None else utcnow()


def verify(
    session: Session, settings: Settings, ref: str, method: str, by: str,
    now: datetime | None = None,
) -> Case:
    """Record that the requester's identity was checked, and how; never a copy of a document."""
    if method not in VERIFICATION_METHODS:
        raise CaseError(
            f"unknown verification method {method!r} (use one of: {', '.join(VERIFICATION_METHODS)})"
        )
    case = get_case(session, ref, for_update=True)
    if case.verified:
        raise CaseError(f"case {case.ref} is already verified ({case.verification_method})")
    if case.state not in ("received", "awaiting_verification"):
        raise CaseError(f"case {case.ref} is {case.state}; only a case awaiting verification can be verified")
    moment = _now(now)
    case.verified = True
    case.verified_at = moment
    case.verification_method = method
    if case.clock_start is None:
        _set_deadlines(case, settings, _clock_start(settings, case.received_at, moment))
    _move(session, case, "verified", by, "verified", method=method)
    return case


def extend(
    session: Session, settings: Settings, ref: str, reason: str, by: str,
    now: datetime | None = None,
) -> Case:
    """Extend by two months (Art. 12(3)); the requester must be told within the first month."""
    if not reason or not reason.strip():
        raise CaseError("an extension needs a reason (the requester is told it)")
    case = get_case(session, ref, for_update=True)
    if case.state in FINISHED_STATES:
        raise CaseError(f"case {case.ref} is {case.state}; a finished case cannot be extended")
    if case.extended:
        raise CaseError(f"case {case.ref} is already extended to {case.due}")
    if case.extension_notice_by is None:
        raise CaseError(f"case {case.ref} has no deadline yet (the clock starts at verification)")
    today = _now(now).astimezone(OSLO).date()
    if today > case.extension_notice_by:
        raise CaseError(
            f"case {case.ref} can no longer be extended: the requester had to be told by "
            f"{case.extension_notice_by.isoformat()}"
        )
    previous_due = case.due
    case.extended = True
    case.extension_reason = mask_personal_numbers(reason.strip())
    case.due = case.extended_due
    case.updated_at = utcnow()
    session.add(case)
    record_event(session, case, by, "extended", reason=case.extension_reason,
                 previous_due=previous_due, due=case.due)
    log.info("case extended", extra={"ref": case.ref, "previous_due": previous_due, "due": case.due})
    return case


def close(session: Session, ref: str, by: str, reason: str | None = None,
          now: datetime | None = None) -> Case:
    case = get_case(session, ref, for_update=True)
    if case.state == "closed":
        raise CaseError(f"case {case.ref} is already closed")
    case.closed_at = _now(now)
    _move(session, case, "closed", by, "closed", **({"reason": reason} if reason else {}))
    return case


def reopen(session: Session, ref: str, by: str, reason: str | None = None) -> Case:
    """Back to where the work stopped: verification if it never happened, else drafting."""
    case = get_case(session, ref, for_update=True)
    if case.state not in ("closed", "rejected"):
        raise CaseError(f"case {case.ref} is {case.state}; only a closed or rejected case can be reopened")
    target = "verified" if case.verified or case.verification_method else "awaiting_verification"
    case.closed_at = None
    # A refusal letter still waiting for review no longer says what we do: it must not go out.
    for old in session.execute(
        select(Draft).where(Draft.case_id == case.id, Draft.state == "pending",
                            Draft.kind == "refusal")
    ).scalars():
        old.state = "superseded"
        session.add(old)
    _move(session, case, target, by, "reopened", **({"reason": reason} if reason else {}))
    return case


# -- drafts -------------------------------------------------------------------------------------


# Mail about the case that is not the answer to the request: the extension notice (Art. 12(3))
# and the refusal letter written when staff reject the request (Art. 12(4)). Each is approved
# or dropped on its own, beside the reply, and never moves the case.
NOTICE_KINDS = frozenset({"extension", "refusal"})


def is_notice(kind: str, case: Case) -> bool:
    """Mail about the case rather than its answer: the extension and refusal letters, and an
    opt-out confirmation sent beside a request that still waits for ID (Art. 21(3): marketing
    stops at once; the answer to the rest comes when the person is verified)."""
    if kind in NOTICE_KINDS:
        return True
    return kind == Intent.OPT_OUT.value and bool(set(json.loads(case.intents)) - {kind})
# A line for staff in a draft ("[[ … ]]", drafting.STAFF_MARK): such a draft cannot be sent.
STAFF_MARK = "[["  # mail about the case, not the answer to the request


def add_draft(session: Session, case: Case, *, kind: str, language: str, subject: str,
              body: str, quoted_sections: Iterable[str] = (), actor: str = "dsr") -> Draft:
    """A new draft supersedes a pending one of its family (reply or notice); a reply to a
    verified case moves the case to drafted."""
    notice = is_notice(kind, case)
    draft = Draft(case_id=case.id, kind=kind, language=language, subject=subject, body=body,
                  quoted_sections=json.dumps(list(quoted_sections)))
    if first_for_new_case(session, case, "drafts"):
        # Its first draft (the case opened in this transaction): nothing to supersede, and
        # the row goes in with one statement.
        insert_row(session, draft)
    else:
        for old in session.execute(
            select(Draft).where(Draft.case_id == case.id, Draft.state == "pending")
        ).scalars():
            # A notice supersedes a pending notice of its own kind only: a new opt-out
            # confirmation must not drop a pending extension notice, nor the reverse.
            if (notice and old.kind == kind) or (not notice and not is_notice(old.kind, case)):
                old.state = "superseded"
                session.add(old)
        session.add(draft)
        session.flush()
    log.info("draft added", extra={"ref": case.ref, "draft": draft.id, "kind": kind,
                                   "language": language})
    if not notice and case.state in ("verified", "drafted", "approved", "answered"):
        _move(session, case, "drafted", actor, "drafted", draft=draft.id, draft_kind=kind)
    else:
        record_event(session, case, actor, "drafted", draft=draft.id, draft_kind=kind)
    return draft


def pending_draft(session: Session, case: Case) -> Draft:
    """The oldest pending draft: a time-bound notice (extension) is reviewed before the reply."""
    draft = session.execute(
        select(Draft).where(Draft.case_id == case.id, Draft.state == "pending")
        .order_by(Draft.id).with_for_update()
    ).scalars().first()
    if draft is None:
        raise CaseError(f"case {case.ref} has no draft waiting for review")
    return draft


def keep_generated(draft: Draft, edited_body: str) -> None:
    """Staff's edit becomes the body; the text dsr wrote stays as the earlier version."""
    if edited_body != draft.body and draft.generated_body is None:
        draft.generated_body = draft.body
    draft.body = edited_body


def draft_versions(draft: Draft) -> list[dict[str, Any]]:
    """The versions of one draft, oldest first: what dsr wrote, then staff's edit if any."""
    if draft.generated_body is None:
        return [{"version": 1, "by": "dsr", "body": draft.body}]
    return [{"version": 1, "by": "dsr", "body": draft.generated_body},
            {"version": 2, "by": draft.decided_by, "body": draft.body}]


def _refuse_if_closed(case: Case) -> None:
    """A closed case takes no decisions, not even on a notice left pending: nothing about it may
    go out until someone reopens it."""
    if case.state == "closed":
        raise CaseError(f"case {case.ref} is closed; reopen it before deciding on its drafts")


def approve_draft(session: Session, ref: str, by: str, edited_body: str | None = None,
                  now: datetime | None = None) -> Draft:
    """Staff approval; a reply that discloses anything needs a verified requester first."""
    case = get_case(session, ref, for_update=True)
    _refuse_if_closed(case)
    draft = pending_draft(session, case)
    if is_notice(draft.kind, case):
        return _decide_notice(session, case, draft, "approved", by, now, body=edited_body)
    if case.state != "drafted":
        raise CaseError(f"case {case.ref} is {case.state}; verify the requester before approving a reply")
    if Intent.ACCESS.value in draft.kind.split("+"):
        open_items = [i.system for i in checklist(session, case, "access") if i.state == "pending"]
        if open_items:
            raise CaseError(
                f"case {case.ref}: collect the person's data in every system first, or mark "
                f"that none is held there (open: {', '.join(open_items)}); the copy goes with "
                "the answer (Art. 15(3))"
            )
    if draft.kind == "erasure":
        open_tasks = [t.system for t in erasure_tasks(session, case) if t.state == "pending"]
        if open_tasks:
            raise CaseError(
                f"case {case.ref}: settle the erasure in every system first (open: {', '.join(open_tasks)})"
            )
    if edited_body is not None:
        if not edited_body.strip():
            raise CaseError("the edited reply is empty")
        keep_generated(draft, edited_body)
    if STAFF_MARK in draft.body:
        raise CaseError(
            f"case {case.ref}: the reply still holds a line for staff ({STAFF_MARK} … ]]); "
            "settle what it names, or edit it (--edit-file) before approving"
        )
    draft.state = "approved"
    draft.decided_at = _now(now)
    draft.decided_by = by
    session.add(draft)
    _move(session, case, "approved", by, "approved", draft=draft.id, edited=edited_body is not None)
    log.info("draft approved", extra={"ref": case.ref, "draft": draft.id, "kind": draft.kind,
                                      "edited": edited_body is not None})
    return draft


def reject_draft(session: Session, ref: str, reason: str, by: str,
                 now: datetime | None = None) -> Draft:
    """Rejecting the drafted reply rejects the request; the reason goes to the requester."""
    if not reason or not reason.strip():
        raise CaseError("a rejection needs a reason (it is shown to the requester)")
    case = get_case(session, ref, for_update=True)
    _refuse_if_closed(case)
    draft = pending_draft(session, case)
    if is_notice(draft.kind, case):
        return _decide_notice(session, case, draft, "rejected", by, now, reason=reason.strip())
    draft.state = "rejected"
    draft.reason = reason.strip()
    draft.decided_at = _now(now)
    draft.decided_by = by
    session.add(draft)
    _move(session, case, "rejected", by, "rejected", draft=draft.id, reason=draft.reason)
    log.info("draft rejected", extra={"ref": case.ref, "draft": draft.id, "kind": draft.kind})
    return draft


def _decide_notice(session: Session, case: Case, draft: Draft, outcome: str, by: str,
                   now: datetime | None, body: str | None = None, reason: str | None = None) -> Draft:
    """A notice is approved or dropped on its own; the case's state is not the notice's business."""
    if body is not None:
        if not body.strip():
            raise CaseError("the edited notice is empty")
        keep_generated(draft, body)
    if outcome == "approved" and STAFF_MARK in draft.body:
        raise CaseError(
            f"case {case.ref}: the {draft.kind} notice still holds a line for staff "
            f"({STAFF_MARK} … ]]); do what it names, or edit it (--edit-file) before approving"
        )
    draft.state, draft.reason = outcome, reason
    draft.decided_at, draft.decided_by = _now(now), by
    session.add(draft)
    record_event(session, case, by, f"notice_{outcome}", draft=draft.id, draft_kind=draft.kind)
    log.info(f"notice {outcome}", extra={"ref": case.ref, "draft": draft.id, "kind": draft.kind})
    return draft


# Why a case cannot get a fresh reply (`dsr drafts redraft`), by state; a case in any other
# state (verified, drafted) is redrafted from the case as it stands.
NO_REDRAFT = {
    "received": "its requester has not been asked to verify yet",
    "awaiting_verification": "verify the requester first: a reply may disclose personal data",
    "approved": "its reply is approved and on its way; nothing is left to redraft",
    "answered": "it is answered; close and reopen it to write a new reply",
    "closed": "it is closed; reopen it first",
    "rejected": "the request was rejected (its refusal letter is the draft to review); "
                "reopen it to answer the request after all",
}


def check_redraft(case: Case) -> None:
    """Refuse a fresh reply where the case cannot have one (NO_REDRAFT says why)."""
    why = NO_REDRAFT.get(case.state)
    if why is not None:
        raise CaseError(f"case {case.ref} is {case.state}; it cannot be redrafted: {why}")


def assign(session: Session, ref: str, assignee: str | None, by: str) -> Case:
    """Give the case to one staff member (None: to nobody), so escalations name who must act.
    A finished case keeps whoever had it."""
    assignee = " ".join(assignee.split()) if assignee else None
    case = get_case(session, ref, for_update=True)
    if case.state in FINISHED_STATES:
        raise CaseError(f"case {case.ref} is {case.state}; a finished case is not assigned")
    if case.assignee == assignee:
        return case
    previous, case.assignee = case.assignee, assignee
    case.updated_at = utcnow()
    session.add(case)
    record_event(session, case, by, "assigned", assignee=assignee, previous=previous)
    log.info("case assigned", extra={"ref": case.ref, "assigned": assignee is not None})
    return case


def record_rectification(session: Session, ref: str, what: str, by: str) -> Case:
    """Record what was corrected (Art. 16): the rectification reply states it. Only for a
    verified requester who asked for rectification, while the reply can still change."""
    if not what or not what.strip():
        raise CaseError("say what was corrected (--what); the requester is told it")
    case = get_case(session, ref, for_update=True)
    if "rectification" not in json.loads(case.intents):
        raise CaseError(f"case {case.ref} does not ask for rectification")
    if not case.verified:
        raise CaseError(f"case {case.ref}: verify the requester before correcting their data")
    check_redraft(case)
    record_event(session, case, by, "rectified", what=" ".join(what.split()))
    log.info("rectification recorded", extra={"ref": case.ref})
    return case


def corrections(session: Session, case: Case) -> list[str]:
    """What staff recorded as corrected, oldest first (masked, as the audit trail keeps it)."""
    write_waiting(session)
    events = session.execute(
        select(Event).where(Event.case_id == case.id, Event.kind == "rectified")
        .order_by(Event.at, Event.id)
    ).scalars()
    return [str(json.loads(e.detail).get("what", "")) for e in events if e.detail]


def _log_checklist_settled(session: Session, case: Case) -> None:
    """Say once every system is settled: that is when the erasure reply may be approved."""
    tasks = erasure_tasks(session, case)
    if tasks and all(t.state != "pending" for t in tasks):
        log.info("erasure checklist settled", extra={"ref": case.ref, "systems": len(tasks)})


def erasure_tasks(session: Session, case: Case) -> list[ErasureTask]:
    return list(session.execute(
        select(ErasureTask).where(ErasureTask.case_id == case.id).order_by(ErasureTask.id)
    ).scalars())


ERASURE_OUTCOMES = ("done", "kept", "suppressed")


def settle_erasure(session: Session, ref: str, system: str, outcome: str, by: str,
                   law: str | None = None, note: str | None = None,
                   until: date | None = None) -> ErasureTask:
    """Tick one system as erased, as kept by law (the law must be named, and until when), or
    as suppressed (marketing systems: the suppression entry stays so marketing stays stopped)."""
    if outcome not in ERASURE_OUTCOMES:
        raise CaseError("an erasure task is settled as 'done', 'kept' or 'suppressed'")
    if outcome == "kept" and not (law and law.strip()):
        raise CaseError("data kept by law must name the law (e.g. bokføringsloven § 13)")
    if outcome != "kept" and until is not None:
        raise CaseError("only data kept by law has an end date (--until)")
    case = get_case(session, ref, for_update=True)
    if case.state in FINISHED_STATES:
        raise CaseError(f"case {case.ref} is {case.state}; reopen it before changing its checklist")
    for task in erasure_tasks(session, case):
        if task.system.lower() == system.strip().lower():
            task.state, task.law, task.note = outcome, (law or None), note
            task.kept_until = until if outcome == "kept" else None
            task.settled_by, task.settled_at = by, utcnow()
            session.add(task)
            record_event(session, case, by, f"erasure_{outcome}", system=task.system, law=law,
                         until=until)
            log.info("erasure settled", extra={"ref": case.ref, "system": task.system,
                                               "outcome": outcome})
            _log_checklist_settled(session, case)
            return task
    raise CaseError(f"case {case.ref} has no erasure task for system {system!r}")


# -- what the email channel records ----------------------------------------------------------------


def add_intents(session: Session, case: Case, intents: Iterable[str], actor: str,
                systems: Iterable[str] = (), **detail: Any) -> list[str]:
    """A follow-up asked for more ("og slett alt etterpå"): the case takes the new intents
    instead of a second case opening. Returns the intents that were new."""
    current = json.loads(case.intents)
    new = [intent for intent in dict.fromkeys(intents) if intent not in current]
    if not new:
        return []
    case.intents = json.dumps(current + new)
    case.unclear = False
    case.updated_at = utcnow()
    session.add(case)
    record_event(session, case, actor, "intent_added", intents=new, **detail)
    log.info("intent added", extra={"ref": case.ref, "intents": new})
    if "erasure" in new and not erasure_tasks(session, case):
        create_erasure_tasks(session, case, list(systems), actor)
    return new


def require_verification(session: Session, case: Case, actor: str, **detail: Any) -> None:
    """Back to ID verification: a follow-up asked for something that discloses personal data on
    a case that needed none (an opt-out, a question). A pending reply is withdrawn."""
    for draft in session.execute(
        select(Draft).where(Draft.case_id == case.id, Draft.state == "pending")
    ).scalars():
        if not is_notice(draft.kind, case):
            draft.state = "superseded"
            session.add(draft)
    if case.verification_method == "not_required":
        case.verification_method = None
    _move(session, case, "awaiting_verification", actor, "verification_requested", **detail)


def mark_delivered(session: Session, case: Case, *, draft: Draft | None, outbox_id: int,
                   actor: str = "dsr") -> None:
    """A mail about the case reached the relay. When it is the approved reply the case is
    answered now, on delivery, not when staff approved it."""
    if (draft is not None and not is_notice(draft.kind, case) and draft.state == "approved"
            and case.state == "approved"):
        _move(session, case, "answered", actor, "answered", draft=draft.id, outbox=outbox_id)
        return
    record_event(session, case, actor, "mail_sent", outbox=outbox_id,
                 draft=draft.id if draft is not None else None)


# -- access collection and marketing suppression -------------------------------------------------

CHECKLIST_KINDS = ("access", "suppression")
# access: "done" = the person's data from that system is collected for the copy, "none" = none
# is held there; suppression: "done" = marketing to the person is stopped in that system.
CHECKLIST_OUTCOMES = {"access": ("done", "none"), "suppression": ("done",)}


def checklist(session: Session, case: Case, kind: str) -> list[ChecklistItem]:
    return list(session.execute(
        select(ChecklistItem).where(ChecklistItem.case_id == case.id, ChecklistItem.kind == kind)
        .order_by(ChecklistItem.id)
    ).scalars())


def create_checklist(session: Session, case: Case, kind: str, systems: Iterable[str],
                     actor: str) -> list[str]:
    """Lay out one row per system (those already there are kept as they are)."""
    if kind not in CHECKLIST_KINDS:
        raise ValueError(f"unknown checklist {kind!r}")
    if first_for_new_case(session, case, f"checklist:{kind}"):
        # Opened in this transaction: it has no checklist yet, and the rows go in as plain
        # statements (nothing in the session reads them as objects before the commit).
        new = list(dict.fromkeys(systems))
        insert_rows(session, ChecklistItem, [{"case_id": case.id, "kind": kind, "system": system}
                                             for system in new])
    else:
        existing = {item.system.lower() for item in checklist(session, case, kind)}
        new = [s for s in dict.fromkeys(systems) if s.lower() not in existing]
        for system in new:
            session.add(ChecklistItem(case_id=case.id, kind=kind, system=system))
        if new:
            session.flush()
    if new:
        record_event(session, case, actor, "checklist", checklist=kind, systems=new)
    return new


def tick(session: Session, ref: str, kind: str, system: str, outcome: str, by: str,
         note: str | None = None) -> ChecklistItem:
    """Staff tick one system of the access collection or of the marketing suppression."""
    allowed = CHECKLIST_OUTCOMES.get(kind, ())
    if outcome not in allowed:
        raise CaseError(f"a {kind} item is settled as {' or '.join(repr(o) for o in allowed)}")
    case = get_case(session, ref, for_update=True)
    if case.state in ("closed", "rejected"):
        raise CaseError(f"case {case.ref} is {case.state}; reopen it before changing its checklist")
    for item in checklist(session, case, kind):
        if item.system.lower() == system.strip().lower():
            item.state, item.note = outcome, note
            item.settled_by, item.settled_at = by, utcnow()
            session.add(item)
            event = "marketing_stopped" if kind == "suppression" else "collected"
            record_event(session, case, by, event, system=item.system, outcome=outcome)
            log.info("checklist ticked", extra={"ref": case.ref, "checklist": kind,
                                                "system": item.system, "outcome": outcome})
            return item
    known = ", ".join(i.system for i in checklist(session, case, kind)) or "none"
    raise CaseError(f"case {case.ref} has no {kind} item for system {system!r} (it has: {known})")


# -- presentation ---------------------------------------------------------------------------------


def _iso(d: date | datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def days_left(case: Case, today: date | None = None) -> int | None:
    if case.due is None or case.state in FINISHED_STATES:
        return None
    today = today or datetime.now(OSLO).date()
    return (case.due - today).days


def case_summary(case: Case) -> dict[str, Any]:
    """The JSON shape of a case that operators script against (DESIGN.md)."""
    return {
        "ref": case.ref,
        "org": case.org,
        "state": case.state,
        "intents": json.loads(case.intents),
        "unclear": case.unclear,
        "language": case.language,
        "requester": case.requester,
        "requester_name": case.requester_name,
        "channel": case.channel,
        "received_at": _iso(case.received_at),
        "due": _iso(case.due),
        "legal_due": _iso(case.legal_due),
        "promised_due": _iso(case.promised_due),
        "extension_notice_by": _iso(case.extension_notice_by),
        "extended_due": _iso(case.extended_due),
        "extended": case.extended,
        "extension_reason": case.extension_reason,
        "verified": case.verified,
        "verification_method": case.verification_method,
        "assignee": case.assignee,
        "days_left": days_left(case),
    }


def case_details(session: Session, case: Case) -> dict[str, Any]:
    write_waiting(session)
    data = case_summary(case)
    messages = session.execute(
        select(Message).where(Message.case_id == case.id).order_by(Message.received_at, Message.id)
    ).scalars()
    data["messages"] = [
        {"id": m.id, "channel": m.channel, "direction": m.direction, "received_at": _iso(m.received_at),
         "subject": m.subject, "status": m.status, "auto": m.auto, "text": m.text}
        for m in messages
    ]
    drafts = session.execute(
        select(Draft).where(Draft.case_id == case.id).order_by(Draft.id)
    ).scalars()
    data["drafts"] = [
        {"id": d.id, "kind": d.kind, "language": d.language, "state": d.state, "subject": d.subject,
         "body": d.body, "quoted_sections": json.loads(d.quoted_sections),
         "created_at": _iso(d.created_at), "decided_at": _iso(d.decided_at),
         "decided_by": d.decided_by, "reason": d.reason,
         "edited": d.generated_body is not None, "versions": draft_versions(d)}
        for d in drafts
    ]
    data["checklists"] = {
        kind: [{"system": i.system, "state": i.state, "note": i.note, "settled_by": i.settled_by,
                "settled_at": _iso(i.settled_at)} for i in checklist(session, case, kind)]
        for kind in CHECKLIST_KINDS
    }
    data["erasure_tasks"] = [
        {"system": t.system, "state": t.state, "law": t.law, "until": _iso(t.kept_until),
         "note": t.note, "settled_by": t.settled_by, "settled_at": _iso(t.settled_at)}
        for t in erasure_tasks(session, case)
    ]
    events = session.execute(
        select(Event).where(Event.case_id == case.id).order_by(Event.at, Event.id)
    ).scalars()
    data["events"] = [
        {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "detail": json.loads(e.detail)}
        for e in events
    ]
    return data
