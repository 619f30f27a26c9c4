"""Deadlines in motion: the escalation sweep, the managers' digest, and a calendar that changes.

One periodic, idempotent sweep (FIELD-NOTES: Scheduling); its state lives in the tables, never
in a job store, so any number of `dsr serve` instances on one PostgreSQL database may run it:

- Each escalation is a row in `escalations`, unique on (case, step). The step names the due date
  it belongs to (``before3:2026-04-14``), so an extension moves the ladder to the new date while
  what was sent for the old one stays sent. The row, the audit event (kind ``escalation``) and the
  outbox rows that deliver it are written in one transaction: the insert that loses the race
  writes nothing. They are written in chunks of cases (CHUNK per transaction, a few statements
  each: one claiming INSERT ... ON CONFLICT DO NOTHING RETURNING, then the outbox rows and the
  audit events in bulk), so a backlog of thousands takes seconds, and a sweep stopped between
  chunks is finished by the next one.
- The digest is claimed per period by a unique row in `digests`.
- The working-day calendar the case dates were computed on is kept in `scheduler_state`; when it
  changes (an `extra_closed_dates` entry, a new `holidays` release) open cases' dates are computed
  again, at start and at the next sweep, and never moved earlier than a date already given.

This module writes outbox rows (email: a built message; Slack: a JSON `chat.postMessage` call);
the outbox delivers them. It never imports intake or outbox: they meet in tables.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from functools import lru_cache
from typing import Any, NamedTuple

import holidays
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import cases, drafting, workflow
from .config import Settings
from .deadlines import OSLO, Calendar, compute_deadlines
from .logs import get_logger
from .store import bulk
from .store.db import session_scope
from .store.models import (
    Case,
    ChecklistItem,
    Digest,
    ErasureTask,
    Escalation,
    Outbox,
    SchedulerState,
    utcnow,
)
from .vocabulary import NOT_A_REQUEST, SLACK_USER_RE

log = get_logger("scheduler")

FINISHED = ("answered", "closed", "rejected")
# The same predicate as the partial index ix_cases_open_due (migration 0007): keep them equal.
OPEN_SQL = "state NOT IN ('answered', 'closed', 'rejected')"
DIGEST_HORIZON = 7  # working days: "due soon" in the digest
CHUNK = 1000  # cases escalated per transaction: a backlog never holds its locks for long
BATCH = 200  # verification reminders per transaction (each one sends a fresh code)
PARALLEL_CHUNKS = 2  # PostgreSQL: chunks written at once, each on its own connection
TEMPLATE_LANGUAGES = ("nb", "nn", "en")
ACTOR = "dsr-scheduler"


def calendar_of(settings: Settings) -> Calendar:
    c = settings.cases
    return Calendar(c.holiday_country, c.holiday_subdiv, c.extra_closed_dates)


def as_of(moment: datetime) -> str:
    """The moment a sweep acted at, as its audit events record it (`as_of`, Oslo time): under
    `dsr sweep --now` the simulated moment, while the event's own `at` is the real clock."""
    return moment.astimezone(OSLO).isoformat(timespec="seconds")


def now_of(settings: Settings, now: datetime | None = None) -> datetime:
    """The moment to act at: given, else the configured drill time, else the clock."""
    moment = now or settings.scheduler.now
    if moment is None:
        return utcnow()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=OSLO)
    return moment.astimezone(timezone.utc)


def _dialect_insert(session: Session, table: Any) -> Any:
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


# -- the ladder --------------------------------------------------------------------------------


def ladder_step(cal: Calendar, today: date, due: date, ladder: Iterable[int],
                checklist_days: int = 0, unsettled: bool = False) -> tuple[str, str, int] | None:
    """The step a case is at on `today`: (step key, kind, working days left or over), or None.

    Steps are due on working days only: ``beforeN`` from N working days before `due` (a missed
    sweep catches up once, with the step the case has reached), ``due`` on the due date,
    ``overdue`` once on every working day after it; ``checklist`` from `checklist_days` before
    due while a checklist is unsettled."""
    if not cal.is_working_day(today):
        return None
    left = cal.working_days_between(today, due)
    if left < 0:
        return f"overdue:{due.isoformat()}:{today.isoformat()}", "overdue", -left
    if left == 0:
        return f"due:{due.isoformat()}", "due", 0
    if unsettled and left <= checklist_days:
        return f"checklist:{due.isoformat()}", "checklist", left
    reached = [n for n in sorted(ladder) if n >= left]
    if not reached:
        return None
    return f"before{reached[0]}:{due.isoformat()}", "before", left


@dataclass
class Escalated:
    ref: str
    org: str
    step: str
    due: date | None
    to: list[str] = field(default_factory=list)

    def line(self) -> str:
        due = self.due.isoformat() if self.due else "-"
        return f"{self.ref}  {self.org}  {self.step}  due {due}  -> {', '.join(self.to) or 'nobody'}"


def _unsettled(session: Session, case_id: int) -> list[str]:
    items = session.execute(select(ChecklistItem.kind, ChecklistItem.system).where(
        ChecklistItem.case_id == case_id, ChecklistItem.state == "pending")).all()
    tasks = session.execute(select(ErasureTask.system).where(
        ErasureTask.case_id == case_id, ErasureTask.state == "pending")).all()
    return [f"{kind}: {system}" for kind, system in items] + [f"erasure: {s}" for (s,) in tasks]


def _language(language: str) -> str:
    return language if language in TEMPLATE_LANGUAGES else "en"


@lru_cache(maxsize=32)
def _environment(dirs: tuple[Any, ...], language: str, html: bool) -> Environment:
    """One environment per template folders and language (a sweep renders thousands)."""
    return Environment(loader=ChoiceLoader([FileSystemLoader(str(d / language)) for d in dirs]),
                       autoescape=html, undefined=StrictUndefined, trim_blocks=True,
                       lstrip_blocks=True, keep_trailing_newline=True)


def _render(language: str, name: str, context: dict[str, Any], html: bool = False
            ) -> tuple[str, str]:
    env = _environment(drafting.template_dirs(), _language(language), html)
    template = env.get_template(name)
    subject = "".join(template.blocks["subject"](template.new_context(context))).strip()
    body = "".join(template.blocks["body"](template.new_context(context)))
    lines = [line.rstrip() for line in body.strip("\n").splitlines()]
    tidy: list[str] = []
    for line in lines:  # at most one blank line in a row
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return " ".join(subject.split()), "\n".join(tidy).strip() + "\n"


def _mail(from_addr: str, from_name: str, to: str, subject: str, body: str,
          html: str | None, moment: datetime, key: str) -> bytes:
    """A notice to staff: Auto-Submitted, text (and HTML) parts, nothing to thread to."""
    plain = MIMEText(body, "plain", "utf-8")
    if html is None:
        msg: MIMEText | MIMEMultipart = plain
    else:
        msg = MIMEMultipart("alternative")
        msg.attach(plain)
        msg.attach(MIMEText(html, "html", "utf-8"))
    msg["From"] = formataddr((from_name, from_addr))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(moment)
    msg["Message-ID"] = make_msgid(domain=from_addr.rpartition("@")[2] or "dsr.invalid")
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-DSR-Key"] = key
    msg["X-Auto-Response-Suppress"] = "All"
    return msg.as_bytes()


def _slack_call(channel: str, text_: str, blocks: list[dict[str, Any]]) -> bytes:
    payload = {"method": "chat.postMessage",
               "args": {"channel": channel, "text": text_, "blocks": blocks}}
    return json.dumps(payload, ensure_ascii=False).encode()


def queue_slack(session: Session, *, dedup_key: str, channel: str, text_: str,
                blocks: list[dict[str, Any]], case_id: int | None, moment: datetime) -> Outbox:
    row = Outbox(dedup_key=dedup_key, kind="slack", case_id=case_id, recipient=channel,
                 payload=_slack_call(channel, text_, blocks),
                 next_attempt_at=moment, created_at=moment)
    session.add(row)
    return row


def queue_staff_mail(session: Session, *, dedup_key: str, to: str, from_addr: str,
                     from_name: str, subject: str, body: str, html: str | None,
                     case_id: int | None, moment: datetime) -> Outbox:
    row = Outbox(dedup_key=dedup_key, kind="email", case_id=case_id, recipient=to,
                 payload=_mail(from_addr, from_name, to, subject, body, html, moment, dedup_key),
                 next_attempt_at=moment, created_at=moment)
    session.add(row)
    return row


def _candidates(session: Session, horizon: date) -> list[tuple[int, date]]:
    """Open cases due by `horizon` (overdue ones included), through the partial index."""
    rows = session.execute(text(
        f"SELECT id, due FROM cases WHERE {OPEN_SQL} AND due <= :horizon ORDER BY id"
    ), {"horizon": horizon}).all()
    return [(r[0], r[1] if isinstance(r[1], date) else date.fromisoformat(r[1])) for r in rows]


def _sent_steps(session: Session, horizon: date) -> set[tuple[int, str]]:
    rows = session.execute(text(
        "SELECT e.case_id, e.step FROM escalations e WHERE e.case_id IN ("
        f"SELECT id FROM cases WHERE {OPEN_SQL} AND due <= :horizon)"
    ), {"horizon": horizon}).all()
    return {(r[0], r[1]) for r in rows}


def _with_unsettled(session: Session, horizon: date) -> set[int]:
    """Candidates with a checklist system not settled (access, suppression or erasure)."""
    due = f"SELECT id FROM cases WHERE {OPEN_SQL} AND due <= :horizon"
    rows = session.execute(text(
        f"SELECT case_id FROM checklist_items WHERE state = 'pending' AND case_id IN ({due})"
        f" UNION SELECT case_id FROM erasure_tasks WHERE state = 'pending' AND case_id IN ({due})"
    ), {"horizon": horizon}).all()
    return {r[0] for r in rows}


def _reminder_candidates(session: Session, cutoff: datetime) -> list[int]:
    rows = session.execute(text(
        "SELECT c.id FROM cases c LEFT JOIN escalations e ON e.case_id = c.id"
        " AND e.step = 'verification_reminder'"
        " WHERE c.state = 'awaiting_verification' AND c.received_at <= :cutoff"
        " AND e.id IS NULL ORDER BY c.id"
    ), {"cutoff": cutoff.astimezone(timezone.utc).replace(tzinfo=None)}).all()
    return [r[0] for r in rows]


def _claim_step(session: Session, case_id: int, step: str, due: date | None,
                moment: datetime) -> int | None:
    """Insert the (case, step) row; its id, or None when another sweep has it already."""
    claimed = _claim_steps(session, [(case_id, step, due)], moment)
    return claimed.get((case_id, step))


_ESCALATIONS = Escalation.__table__
_OUTBOX = Outbox.__table__


def _claim_steps(session: Session, steps: list[tuple[int, str, date | None]],
                 moment: datetime) -> dict[tuple[int, str], int]:
    """Insert the (case, step) rows in one multi-row INSERT ... ON CONFLICT DO NOTHING
    RETURNING; {(case, step): id} of those this transaction claimed. A step that another
    sweep (here or in another instance) has already is not returned: it is theirs."""
    if not steps:
        return {}
    created = moment.astimezone(timezone.utc)
    today = moment.astimezone(OSLO).date()
    rows = bulk.insert_returning(
        session.connection(), _ESCALATIONS, ("case_id", "step", "due_on", "created_at"),
        [(case_id, step, due or today, created) for case_id, step, due in steps],
        conflict=("case_id", "step"), returning=("id", "case_id", "step"))
    return {(case_id, step): esc_id for esc_id, case_id, step in rows}


def _unsettled_of(session: Session, case_ids: list[int]) -> dict[int, list[str]]:
    """Per case, its checklist systems not settled (access, suppression, then erasure)."""
    found: dict[int, list[str]] = {}
    if not case_ids:
        return found
    connection = session.connection()
    ids, params = bulk.member(connection, ChecklistItem.__table__.c.case_id, case_ids)
    for case_id, kind, system in connection.exec_driver_sql(
            "SELECT case_id, kind, system FROM checklist_items WHERE state = 'pending'"
            f" AND {ids} ORDER BY case_id, id", params):
        found.setdefault(case_id, []).append(f"{kind}: {system}")
    ids, params = bulk.member(connection, ErasureTask.__table__.c.case_id, case_ids)
    for case_id, system in connection.exec_driver_sql(
            "SELECT case_id, system FROM erasure_tasks WHERE state = 'pending'"
            f" AND {ids} ORDER BY case_id, id", params):
        found.setdefault(case_id, []).append(f"erasure: {system}")
    return found


_OUTBOX_COLUMNS = ("dedup_key", "kind", "case_id", "recipient", "payload", "state", "attempts",
                   "next_attempt_at", "created_at")


def _outbox_row(dedup_key: str, kind: str, case_id: int | None, recipient: str,
                payload: bytes, moment: datetime) -> tuple[Any, ...]:
    return (dedup_key, kind, case_id, recipient, payload, "pending", 0, moment, moment)


class _Due(NamedTuple):
    """A case as the sweep reads it: plain values, no ORM object."""

    id: int
    ref: str
    org: str
    state: str
    due: date
    intents: str | None
    extended: bool
    assignee: str | None = None


def _assignee_for(assignee: str | None, slack: bool) -> str | None:
    """How an escalation names the assignee: a Slack user ID is a mention in Slack (they are
    notified) and marked as a Slack ID in mail; a name stays a name."""
    if not assignee or not SLACK_USER_RE.match(assignee):
        return assignee
    return f"<@{assignee}>" if slack else f"{assignee} (Slack)"


def _routes(settings: Settings, org: Any) -> dict[bool, tuple[str | None, list[str]]]:
    """Where an organisation's escalations go, (Slack channel, managers), not urgent and
    urgent: Slack when on, managers' email when Slack is off and always from the due date on."""
    slack = settings.slack
    routes = {}
    for urgent in (False, True):
        channel = None
        if slack.enabled:
            channel = (slack.manager_channel or slack.review_channel) if urgent else \
                (slack.review_channel or slack.manager_channel)
        routes[urgent] = (channel, list(org.managers) if urgent or not channel else [])
    return routes


def _escalation_rows(org: Any, route: tuple[str | None, list[str]], case: _Due, esc_id: int,
                     kind: str, days: int, unsettled: list[str], moment: datetime
                     ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Where one escalation goes (`route`, see _routes) and its outbox rows, rendered only
    when it goes somewhere."""
    channel, managers = route
    to = ([f"slack:{channel}"] if channel else []) + [f"mail:{m}" for m in managers]
    if not to:
        return to, []
    context = {"kind": kind, "days": days, "ref": case.ref, "org_name": org.name,
               "due": case.due.isoformat() if case.due else "-",
               "intents": json.loads(case.intents or "[]"), "state": case.state,
               "extended": bool(case.extended), "unsettled": unsettled,
               "assignee": _assignee_for(case.assignee, slack=False)}
    subject, body = _render(org.language, "escalation.txt.j2", context)
    rows = []
    if channel:
        if case.assignee and SLACK_USER_RE.match(case.assignee):
            context["assignee"] = _assignee_for(case.assignee, slack=True)
            subject, body_slack = _render(org.language, "escalation.txt.j2", context)
        else:
            body_slack = body
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{subject}*"}},
                  {"type": "section", "text": {"type": "mrkdwn", "text": body_slack}}]
        rows.append(_outbox_row(f"escalation:{esc_id}:slack", "slack", case.id, channel,
                                _slack_call(channel, subject, blocks), moment))
    for manager in managers:
        key = f"escalation:{esc_id}:mail:{manager}"
        rows.append(_outbox_row(key, "email", case.id, manager,
                                _mail(org.addresses[0], org.name, manager, subject, body, None,
                                      moment, key), moment))
    return to, rows


def sweep(engine: Engine, settings: Settings, now: datetime | None = None) -> list[Escalated]:
    """One pass: move dates if the calendar changed, then every escalation due at `now`.
    Safe to run any number of times, from any number of instances."""
    moment = now_of(settings, now)
    move_dates_if_calendar_changed(engine, settings, moment)
    cal = calendar_of(settings)
    conf = settings.scheduler
    today = moment.astimezone(OSLO).date()
    done: list[Escalated] = []
    if not cal.is_working_day(today):
        return done
    horizon = cal.add_working_days(today, max(conf.ladder + [conf.checklist_warning_days, 0]))
    with session_scope(engine, write=False) as session:
        candidates = _candidates(session, horizon)
        sent = _sent_steps(session, horizon) if candidates else set()
        unsettled = _with_unsettled(session, horizon) if candidates else set()
        reminders = _reminder_candidates(
            session, moment - timedelta(days=conf.verification_reminder_days))
    todo: list[int] = []
    by_due: dict[date, tuple[tuple[str, str, int] | None, int]] = {}  # few distinct due dates
    for case_id, due in candidates:
        # Without knowing the checklists, the plain ladder step; with an unsettled checklist
        # inside the warning window there may be one more step, so look closer.
        if due not in by_due:
            by_due[due] = (ladder_step(cal, today, due, conf.ladder),
                           cal.working_days_between(today, due))
        plain, left = by_due[due]
        maybe_checklist = 0 < left <= conf.checklist_warning_days and case_id in unsettled \
            and (case_id, f"checklist:{due.isoformat()}") not in sent
        if (plain is not None and (case_id, plain[0]) not in sent) or maybe_checklist:
            todo.append(case_id)
    # Each chunk one transaction: a crash between chunks loses nothing, and the next sweep
    # finds what is left (the unique key).
    done += _escalate_chunks(engine, settings, cal, todo, today, moment)
    for start in range(0, len(reminders), BATCH):
        with session_scope(engine) as session:
            for case_id in reminders[start:start + BATCH]:
                item = _remind(session, settings, case_id, moment)
                if item is not None:
                    done.append(item)
    if done:
        log.info("sweep escalated", extra={"escalations": len(done), "today": today})
    return done


def _escalate_chunks(engine: Engine, settings: Settings, cal: Calendar, todo: list[int],
                     today: date, moment: datetime) -> list[Escalated]:
    """The chunks one after another on SQLite (one writer at a time); on PostgreSQL two at a
    time on two connections, so the server writes one chunk while this process prepares the
    other (the chunks share no case, chain or outbox key: nothing for them to wait on). A chunk
    that fails is rolled back whole and left to the next sweep; the others are kept."""
    chunks = [todo[start:start + CHUNK] for start in range(0, len(todo), CHUNK)]
    if engine.dialect.name != "postgresql" or len(chunks) < 2 or PARALLEL_CHUNKS < 2:
        return [item for chunk in chunks
                for item in _escalate_chunk(engine, settings, cal, chunk, today, moment)]
    with ThreadPoolExecutor(max_workers=PARALLEL_CHUNKS, thread_name_prefix="sweep") as pool:
        results = list(pool.map(
            lambda chunk: _escalate_chunk(engine, settings, cal, chunk, today, moment), chunks))
    return [item for result in results for item in result]


def _escalate_chunk(engine: Engine, settings: Settings, cal: Calendar, case_ids: list[int],
                    today: date, moment: datetime) -> list[Escalated]:
    """One transaction for a chunk of cases: the escalation rows, their audit events and the
    outbox rows that deliver them, all or nothing."""
    with session_scope(engine) as session:
        return _escalate_cases(session, settings, cal, case_ids, today, moment)


def _escalate_cases(session: Session, settings: Settings, cal: Calendar, case_ids: list[int],
                    today: date, moment: datetime) -> list[Escalated]:
    """Escalate many cases in a few statements: the cases read (and on PostgreSQL locked) at
    once, their steps claimed in one INSERT ... ON CONFLICT DO NOTHING RETURNING, then for the
    claimed steps only, the outbox rows and the audit events, each with one executemany."""
    conf = settings.scheduler
    # SKIP LOCKED (PostgreSQL): a case another instance (or a staff action) holds is left to
    # it, or to the next sweep; the unique (case, step) row decides who sends.
    connection = session.connection()
    lock = " FOR UPDATE SKIP LOCKED" if connection.dialect.name == "postgresql" else ""
    ids, params = bulk.member(connection, Case.__table__.c.id, case_ids)
    rows = connection.exec_driver_sql(
        "SELECT id, ref, org, state, due, intents, extended, assignee FROM cases WHERE"
        f" {ids} ORDER BY id{lock}", params).fetchall()
    dates: dict[Any, Any] = {}  # SQLite gives text: each distinct due date parsed once
    live = []
    for case_id, ref, org, state, due, intents, extended, assignee in rows:
        if state in FINISHED or due is None:
            continue
        if due not in dates:
            dates[due] = _as_date(due)
        live.append(_Due(case_id, ref, org, state, dates[due], intents, bool(extended),
                         assignee))
    left: dict[date, int] = {}  # working days left, per due date (few distinct ones)
    for r in live:
        if r.due not in left:
            left[r.due] = cal.working_days_between(today, r.due)
    # Checklists are named from `checklist_warning_days` before due (and while overdue) only.
    unsettled = _unsettled_of(session, [r.id for r in live
                                        if left[r.due] <= conf.checklist_warning_days])
    steps_of: dict[tuple[date, bool], list[tuple[str, str, int]]] = {}
    planned: list[tuple[_Due, str, str, int, list[str]]] = []
    for r in live:
        named_all = unsettled.get(r.id, [])
        shape = (r.due, bool(named_all))
        if shape not in steps_of:
            step = ladder_step(cal, today, r.due, conf.ladder, conf.checklist_warning_days,
                               bool(named_all))
            steps = [step] if step is not None else []
            if step is not None and step[1] == "checklist":
                plain = ladder_step(cal, today, r.due, conf.ladder)
                if plain is not None:  # both the checklist warning and the ladder's own step
                    steps.append(plain)
            steps_of[shape] = steps
        for key, kind, days in steps_of[shape]:
            named = named_all if (kind == "checklist" or days <= conf.checklist_warning_days
                                  or kind == "overdue") else []
            planned.append((r, key, kind, days, named))
    claimed = _claim_steps(session, [(r.id, key, r.due) for r, key, *_ in planned], moment)
    done: list[Escalated] = []
    outbox: list[tuple[Any, ...]] = []
    trail: list[tuple[int, str, str, dict[str, Any]]] = []
    orgs: dict[str, tuple[Any, dict[bool, tuple[str | None, list[str]]]]] = {}
    acted = as_of(moment)
    for r, key, kind, days, named in planned:
        esc_id = claimed.get((r.id, key))
        if esc_id is None:
            continue
        if r.org not in orgs:
            org = settings.organization(r.org)
            orgs[r.org] = org, _routes(settings, org)
        org, routes = orgs[r.org]
        to, queued = _escalation_rows(org, routes[kind in ("due", "overdue")], r, esc_id, kind,
                                      days, named, moment)
        outbox += queued
        trail.append((r.id, ACTOR, "escalation",
                      {"step": key, "due": r.due.isoformat(), "to": to, "as_of": acted,
                       **({"unsettled": named} if named else {})}))
        done.append(Escalated(r.ref, r.org, key, r.due, to))
    bulk.insert_many(session.connection(), _OUTBOX, _OUTBOX_COLUMNS, outbox)
    cases.record_events(session, trail)
    return done


def _remind(session: Session, settings: Settings, case_id: int, moment: datetime
            ) -> Escalated | None:
    """One reminder to a requester whose ID is still missing: a fresh code by mail."""
    case = session.execute(select(Case).where(Case.id == case_id)
                           .with_for_update(skip_locked=True)
                           .execution_options(populate_existing=True)).scalar_one_or_none()
    if case is None or case.state != "awaiting_verification":
        return None
    esc_id = _claim_step(session, case.id, "verification_reminder", case.due, moment)
    if esc_id is None:
        return None
    outcome = workflow.resend_code(session, settings, case, now=moment) if case.requester \
        else "no_address"
    to = ["requester"] if outcome == "code_resent" else []
    cases.record_event(session, case, ACTOR, "escalation", step="verification_reminder",
                       due=case.due, to=to, outcome=outcome, as_of=as_of(moment))
    return Escalated(case.ref, case.org, "verification_reminder", case.due, to)


# -- a calendar that changes ---------------------------------------------------------------------

CALENDAR_KEY = "calendar"


def calendar_fingerprint(settings: Settings) -> str:
    c = settings.cases
    return json.dumps({"country": c.holiday_country, "subdiv": c.holiday_subdiv,
                       "extra_closed": sorted(d.isoformat() for d in c.extra_closed_dates),
                       "holidays": getattr(holidays, "__version__", "?")}, sort_keys=True)


def move_dates_if_calendar_changed(engine: Engine, settings: Settings,
                                   now: datetime | None = None) -> list[tuple[str, date, date]]:
    """Recompute open cases' dates when the calendar differs from the one they were computed
    on; each moved due date is an audit event. Never earlier than a date already given."""
    fingerprint = calendar_fingerprint(settings)
    moment = now_of(settings, now)
    with session_scope(engine, write=False) as session:
        stored = session.get(SchedulerState, CALENDAR_KEY)
        if stored is not None and stored.value == fingerprint:
            return []
    moved: list[tuple[str, date, date]] = []
    with session_scope(engine) as session:
        session.execute(_dialect_insert(session, SchedulerState).values(
            key=CALENDAR_KEY, value="", updated_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["key"]))
        state = session.execute(select(SchedulerState).where(SchedulerState.key == CALENDAR_KEY)
                                .with_for_update().execution_options(populate_existing=True)
                                ).scalar_one()
        if state.value == fingerprint:  # another instance did it meanwhile
            return []
        first = state.value == ""
        cal = calendar_of(settings)
        promises = {o.id: o.promise_days for o in settings.organizations}
        fresh_by_start: dict[tuple[date, int], Any] = {}
        # Plain rows, not ORM objects: a case is loaded only when one of its dates moves.
        rows = session.execute(text(
            "SELECT id, org, clock_start, extended, legal_due, promised_due, due,"
            f" extension_notice_by, extended_due FROM cases WHERE {OPEN_SQL}"
            " AND clock_start IS NOT NULL ORDER BY id")).all()
        for row in rows:
            start = _as_utc(row.clock_start).astimezone(OSLO).date()
            key = (start, promises.get(row.org, 30))
            if key not in fresh_by_start:
                fresh_by_start[key] = compute_deadlines(start, key[1], cal)
            fresh = fresh_by_start[key]
            old = [_as_date(v) for v in (row.legal_due, row.promised_due, row.due,
                                         row.extension_notice_by, row.extended_due)]
            if _later_dates(old, fresh, bool(row.extended)) == old:
                continue
            case = session.get(Case, row.id, with_for_update=True, populate_existing=True)
            change = _recompute(case, fresh)
            session.add(case)
            if change is None:
                continue
            before, after = change
            cases.record_event(session, case, ACTOR, "deadline_moved", previous_due=before,
                               due=after, reason="the working-day calendar changed",
                               as_of=as_of(moment))
            moved.append((case.ref, before, after))
        state.value = fingerprint
        state.updated_at = utcnow()
        session.add(state)
    if moved:
        log.info("calendar changed: dates moved", extra={"cases": len(moved), "first": first})
    return moved


def _later(old: date | None, new: date) -> date:
    return new if old is None or new > old else old


def _later_dates(old: list[date | None], fresh: Any, extended: bool) -> list[date | None]:
    """[legal_due, promised_due, due, extension_notice_by, extended_due], each the later of
    the old and the fresh date: a date already given is never moved earlier."""
    legal, promised, due, notice, extended_due = old
    new_extended = _later(extended_due, fresh.extended_due)
    return [_later(legal, fresh.legal_due), _later(promised, fresh.promised_due),
            _later(due, new_extended if extended else fresh.due),
            _later(notice, fresh.extension_notice_by), new_extended]


def _recompute(case: Case, fresh: Any) -> tuple[date, date] | None:
    """Move one case's dates to the fresh ones where they are later; (old due, new due) when
    the due date moved, else None (other dates may still have moved later)."""
    old = [case.legal_due, case.promised_due, case.due, case.extension_notice_by,
           case.extended_due]
    new = _later_dates(old, fresh, case.extended)
    (case.legal_due, case.promised_due, case.due, case.extension_notice_by,
     case.extended_due) = new
    case.updated_at = utcnow()
    if new[2] == old[2]:
        return None
    return old[2], new[2]  # type: ignore[return-value]


# -- the digest ----------------------------------------------------------------------------------


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def build_digest(session: Session, settings: Settings, now: datetime | None = None,
                 since: datetime | None = None) -> dict[str, Any]:
    """What managers read: per organisation and in total, most urgent first."""
    moment = now_of(settings, now)
    today = moment.astimezone(OSLO).date()
    since = since or moment - timedelta(days=7)
    cal = calendar_of(settings)
    soon = cal.add_working_days(today, DIGEST_HORIZON)
    names = {o.id: o.name for o in settings.organizations}
    orgs: dict[str, dict[str, Any]] = {}

    def org_entry(org_id: str) -> dict[str, Any]:
        if org_id not in orgs:
            orgs[org_id] = {"id": org_id, "name": names.get(org_id, org_id), "open_total": 0,
                            "states": {}, "overdue": [], "due_soon": [], "awaiting": [],
                            "answered": 0, "median_days": None, "_days": []}
        return orgs[org_id]

    # Working-day counts per distinct due date, not per case: 100,000 cases share few dates.
    left_cache: dict[date, int] = {}
    rows = session.execute(text(
        f"SELECT ref, org, state, intents, due, received_at FROM cases WHERE {OPEN_SQL}"
    )).all()
    labels_of: dict[str, list[str]] = {}  # a few distinct intents strings, parsed once each
    dates: dict[Any, date | None] = {}
    for ref, org_id, state, intents, due, received in rows:
        entry = org_entry(org_id)
        entry["open_total"] += 1
        entry["states"][state] = entry["states"].get(state, 0) + 1
        if due not in dates:
            dates[due] = _as_date(due)
        due = dates[due]
        if state != "awaiting_verification" and (due is None or due > soon):
            continue
        labels = labels_of.get(intents or "[]")
        if labels is None:
            labels = labels_of[intents or "[]"] = json.loads(intents or "[]")
        if state == "awaiting_verification":
            entry["awaiting"].append({"ref": ref, "intents": labels, "due": due,
                                      "received": _as_utc(received).astimezone(OSLO).date()})
        if due is None:
            continue
        if due < today:
            if due not in left_cache:
                left_cache[due] = cal.working_days_between(today, due)
            entry["overdue"].append({"ref": ref, "intents": labels, "due": due,
                                     "days": max(1, -left_cache[due])})
        elif due <= soon:
            if due not in left_cache:
                left_cache[due] = cal.working_days_between(today, due)
            entry["due_soon"].append({"ref": ref, "intents": labels, "due": due,
                                      "days": left_cache[due]})
    answered = session.execute(text(
        "SELECT c.org, c.received_at, e.at FROM events e JOIN cases c ON c.id = e.case_id"
        " WHERE e.kind = 'answered' AND e.at >= :since AND e.at <= :now"
    ), {"since": since.astimezone(timezone.utc).replace(tzinfo=None),
        "now": moment.astimezone(timezone.utc).replace(tzinfo=None)}).all()
    for org_id, received, at in answered:
        entry = org_entry(org_id)
        entry["answered"] += 1
        days = (_as_utc(at).astimezone(OSLO).date() - _as_utc(received).astimezone(OSLO).date()).days
        entry["_days"].append(days)
    total = {"open_total": 0, "overdue": [], "due_soon": [], "awaiting": [], "answered": 0,
             "median_days": None, "states": {}}
    all_days: list[int] = []
    for entry in orgs.values():
        entry["overdue"].sort(key=lambda c: (-c["days"], c["ref"]))
        entry["due_soon"].sort(key=lambda c: (c["due"], c["ref"]))
        entry["awaiting"].sort(key=lambda c: (c["received"], c["ref"]))
        days = entry.pop("_days")
        all_days += days
        entry["median_days"] = _median(days)
        entry["by_state"] = sorted(entry.pop("states").items(), key=lambda kv: (-kv[1], kv[0]))
        total["open_total"] += entry["open_total"]
        total["answered"] += entry["answered"]
        for key in ("overdue", "due_soon", "awaiting"):
            total[key] += entry[key]
    total["overdue"].sort(key=lambda c: (-c["days"], c["ref"]))
    total["due_soon"].sort(key=lambda c: (c["due"], c["ref"]))
    total["median_days"] = _median(all_days)
    # Most urgent organisation first: overdue, then due soon.
    ordered = sorted(orgs.values(), key=lambda e: (-len(e["overdue"]), -len(e["due_soon"]),
                                                  e["name"]))
    by_org = _set_aside(session, settings, since, moment)
    return {"today": today, "since": since.astimezone(OSLO).date(), "horizon": DIGEST_HORIZON,
            "orgs": ordered, "total": total, "set_aside": sum(by_org.values()),
            "set_aside_by_org": by_org}


def _set_aside(session: Session, settings: Settings, since: datetime, moment: datetime
               ) -> dict[str | None, int]:
    """The safety net of recall first: mail read as certainly no request opened no case; each
    organisation's managers see how many reached them in the period (`dsr messages list` shows
    which). The organisation as intake found it: the envelope, else the To and Cc headers."""
    counts: dict[str | None, int] = {}
    rows = session.execute(text(
        "SELECT envelope_to, raw FROM messages WHERE status = 'ignored' AND auto = :reason"
        " AND case_id IS NULL AND received_at >= :since AND received_at <= :now"
    ), {"reason": NOT_A_REQUEST, "since": since.astimezone(timezone.utc).replace(tzinfo=None),
        "now": moment.astimezone(timezone.utc).replace(tzinfo=None)}).all()
    for envelope, raw in rows:
        addresses = json.loads(envelope or "[]")
        if not any(settings.organization_for_address(a) for a in addresses):
            headers = BytesHeaderParser().parsebytes(bytes(raw))
            addresses = [a for _, a in getaddresses(headers.get_all("To", []) + headers.get_all("Cc", []))]
        org = next((o for o in map(settings.organization_for_address, addresses) if o), None)
        key = org.id if org is not None else None
        counts[key] = counts.get(key, 0) + 1
    return counts


def _median(values: list[int]) -> float | int | None:
    if not values:
        return None
    m = statistics.median(values)
    return int(m) if float(m).is_integer() else round(m, 1)


LISTED = 50  # cases listed per kind and organisation in a digest; the rest are counted


def _capped(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    for key in ("overdue", "due_soon", "awaiting"):
        out[key + "_more"] = max(0, len(entry[key]) - LISTED)
        out[key + "_listed"] = entry[key][:LISTED]
    return out


def _scoped(digest: dict[str, Any], org_id: str | None) -> dict[str, Any]:
    digest = {**digest, "orgs": [_capped(o) for o in digest["orgs"]]}
    if org_id is None:
        return {**digest, "scope": None}
    orgs = [o for o in digest["orgs"] if o["id"] == org_id]
    total = orgs[0] if orgs else {"open_total": 0, "overdue": [], "due_soon": [],
                                  "awaiting": [], "answered": 0, "median_days": None}
    return {**digest, "orgs": orgs, "total": total, "scope": orgs[0]["name"] if orgs else None,
            "set_aside": digest.get("set_aside_by_org", {}).get(org_id, 0)}


def render_digest(digest: dict[str, Any], language: str = "en", org_id: str | None = None
                  ) -> tuple[str, str, str]:
    """(subject, text, HTML) of the digest, for all organisations or one."""
    context = _scoped(digest, org_id)
    subject, body = _render(language, "digest.txt.j2", context)
    _, html = _render(language, "digest.html.j2", context, html=True)
    return subject, body, html


def digest_blocks(digest: dict[str, Any], subject: str) -> list[dict[str, Any]]:
    """Block Kit: a header, the totals, then per organisation the overdue and due-soon cases."""
    t = digest["total"]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Overdue*\n{len(t['overdue'])}"},
            {"type": "mrkdwn", "text": f"*Due ≤ {digest['horizon']} working days*\n{len(t['due_soon'])}"},
            {"type": "mrkdwn", "text": f"*Open*\n{t['open_total']}"},
            {"type": "mrkdwn", "text": f"*Awaiting ID*\n{len(t['awaiting'])}"},
        ]},
    ]
    if digest.get("set_aside"):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"Read as no request since {digest['since']}, kept without a case: "
                       f"{digest['set_aside']} (`dsr messages list`)"}]})
    for org in digest["orgs"]:
        lines = [f"*{org['name']}*: {org['open_total']} open, answered {org['answered']}"
                 + (f" (median {org['median_days']} days)" if org["median_days"] is not None else "")]
        lines += [f":red_circle: `{c['ref']}` {', '.join(c['intents'])} due {c['due']}, "
                  f"{c['days']} working days over" for c in org["overdue"][:10]]
        lines += [f":large_orange_circle: `{c['ref']}` {', '.join(c['intents'])} due {c['due']} "
                  f"({c['days']} left)" for c in org["due_soon"][:10]]
        more = len(org["overdue"]) + len(org["due_soon"]) - min(10, len(org["overdue"])) \
            - min(10, len(org["due_soon"]))
        if more > 0:
            lines.append(f"… and {more} more")
        blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "\n".join(lines)[:2900]}})
    return blocks[:50]


def period_of(settings: Settings, moment: datetime) -> str:
    return moment.astimezone(OSLO).date().isoformat()


def send_digest(engine: Engine, settings: Settings, now: datetime | None = None) -> dict[str, Any] | None:
    """Claim this period's digest and queue it (Slack manager channel, managers' email);
    None when another run already has this period."""
    moment = now_of(settings, now)
    period = period_of(settings, moment)
    with session_scope(engine) as session:
        previous = session.execute(select(Digest.created_at).order_by(Digest.id.desc())
                                   .limit(1)).scalar()
        claimed = session.execute(_dialect_insert(session, Digest).values(
            period=period, created_at=moment.astimezone(timezone.utc),
            open_cases=0,
        ).on_conflict_do_nothing(index_elements=["period"]).returning(Digest.id)).scalar()
        if claimed is None:
            return None
        since = previous if previous is not None and previous < moment else None
        digest = build_digest(session, settings, moment, since=since)
        session.execute(text("UPDATE digests SET open_cases = :n WHERE id = :id"),
                        {"n": digest["total"]["open_total"], "id": claimed})
        to: list[str] = []
        slack = settings.slack
        channel = slack.manager_channel or slack.review_channel
        if slack.enabled and channel:
            subject, _, _ = render_digest(digest, "en")
            queue_slack(session, dedup_key=f"digest:{period}:slack", channel=channel,
                        text_=subject, blocks=digest_blocks(digest, subject), case_id=None,
                        moment=moment)
            to.append(f"slack:{channel}")
        for org in settings.organizations:
            if not org.managers:
                continue
            subject, body, html = render_digest(digest, org.language, org.id)
            for manager in org.managers:
                queue_staff_mail(session, dedup_key=f"digest:{period}:{org.id}:{manager}",
                                 to=manager, from_addr=org.addresses[0], from_name=org.name,
                                 subject=subject, body=body, html=html, case_id=None,
                                 moment=moment)
                to.append(f"mail:{manager}")
    log.info("digest queued", extra={"period": period, "to": len(to)})
    return {"period": period, "to": to, "digest": digest}


# -- inside `dsr serve` --------------------------------------------------------------------------


def cron_trigger(expression: str) -> Any:
    """Five fields (minute first), or six with seconds first; in Europe/Oslo."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) == 6:
        second, minute, hour, day, month, dow = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                           day_of_week=dow, timezone=OSLO)
    return CronTrigger.from_crontab(expression, timezone=OSLO)


class SchedulerStage:
    """APScheduler 3 in one process: two jobs, state in the tables (several instances are
    safe). A missed run (a sleeping laptop, a restart) runs once when it wakes: coalesce, one
    instance at a time, and a grace time as long as the period."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.engine, self.settings = engine, settings
        self.scheduler = BackgroundScheduler(timezone=OSLO)
        self.lock = threading.Lock()
        self.origin = time.monotonic()

    def now(self) -> datetime:
        """The clock, or in a drill (`scheduler.now`) that moment run at `drill_speed`."""
        conf = self.settings.scheduler
        if conf.now is None:
            return utcnow()
        elapsed = (time.monotonic() - self.origin) * conf.drill_speed
        return now_of(self.settings) + timedelta(seconds=elapsed)

    def sweep_once(self) -> None:
        with self.lock:
            try:
                sweep(self.engine, self.settings, self.now())
            except Exception:  # noqa: BLE001 - the next period tries again
                log.exception("sweep failed")

    def digest_once(self) -> None:
        with self.lock:
            try:
                send_digest(self.engine, self.settings, self.now())
            except Exception:  # noqa: BLE001
                log.exception("digest failed")

    def start(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        conf = self.settings.scheduler
        seconds = conf.sweep_seconds or conf.sweep_minutes * 60
        self.origin = time.monotonic()
        try:
            move_dates_if_calendar_changed(self.engine, self.settings, self.now())
        except Exception:  # noqa: BLE001 - the first sweep tries again
            log.exception("calendar check at start failed")
        self.scheduler.add_job(self.sweep_once, IntervalTrigger(seconds=seconds), id="sweep",
                               next_run_time=datetime.now(OSLO), coalesce=True, max_instances=1,
                               misfire_grace_time=max(1, int(seconds)))
        self.scheduler.add_job(self.digest_once, cron_trigger(conf.digest_cron), id="digest",
                               coalesce=True, max_instances=1, misfire_grace_time=6 * 3600)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)


def run_forever(stage: SchedulerStage, stop: threading.Event) -> None:  # pragma: no cover
    stage.start()
    while not stop.wait(0.5):
        pass
    stage.stop()


__all__ = ["sweep", "send_digest", "build_digest", "render_digest", "ladder_step",
           "move_dates_if_calendar_changed", "SchedulerStage", "Escalated"]
