"""The tables of dsr. Every side effect has a unique key so retries and several instances
never do a thing twice; the schema itself is owned by the Alembic migrations beside this file."""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, hands back aware UTC: SQLite keeps no zone, PostgreSQL would convert."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):  # type: ignore[override]
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class CaseCounter(SQLModel, table=True):
    """Last reference number handed out per prefix and year (an atomic upsert allocates)."""

    __tablename__ = "case_counters"
    prefix: str = Field(primary_key=True, max_length=16)
    year: int = Field(primary_key=True)
    last: int = 0


class Case(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("prefix", "year", "seq", name="uq_cases_prefix_year_seq"),
        # The sweep's index (migration 0007): open cases by due date only.
        Index("ix_cases_open_due", "due",
              postgresql_where=text("state NOT IN ('answered', 'closed', 'rejected')"),
              sqlite_where=text("state NOT IN ('answered', 'closed', 'rejected')")),
        Index("ix_cases_state_due", "state", "due"),  # migration 0001: lists by state
    )

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, index=True, max_length=32)
    prefix: str = Field(max_length=16)
    year: int
    seq: int
    org: str = Field(index=True, max_length=64)
    state: str = Field(index=True, max_length=32)
    extended: bool = False
    intents: str = "[]"  # JSON list of labels
    language: str = Field(default="nb", max_length=8)
    unclear: bool = False
    requester: str | None = Field(default=None, max_length=320)
    requester_name: str | None = Field(default=None, max_length=200)
    channel: str = Field(max_length=16)
    received_at: datetime = Field(sa_type=UTCDateTime)
    clock_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    legal_due: date | None = None
    promised_due: date | None = None
    due: date | None = Field(default=None, index=True)
    extension_notice_by: date | None = None
    extended_due: date | None = None
    extension_reason: str | None = Field(default=None, sa_column=Column(Text))
    verified: bool = False
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    verification_method: str | None = Field(default=None, max_length=32)
    # Who on the staff carries the case: a Slack user ID (U…, mentioned in escalations) or a
    # name as typed at the CLI; None = nobody yet.
    assignee: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    """A message as it reached us, raw bytes first; everything else is derived from them."""

    __tablename__ = "messages"
    # Every index is written by each message the listener stores, before its 250: only what is
    # looked up. The worker's queue is the messages still `stored` (a partial index, which a
    # message leaves once decided); a message joins the case index when it joins a case.
    __table_args__ = (
        Index("ix_messages_queue", "received_at", "id",
              sqlite_where=text("status = 'stored'"), postgresql_where=text("status = 'stored'")),
        Index("ix_messages_case_id", "case_id",
              sqlite_where=text("case_id IS NOT NULL"),
              postgresql_where=text("case_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(unique=True, max_length=512)
    channel: str = Field(max_length=16)
    direction: str = Field(default="in", max_length=8)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(max_length=64)  # looked up through dedup_key, which holds it
    message_id: str | None = Field(default=None, index=True, max_length=998)
    received_at: datetime = Field(sa_type=UTCDateTime)
    envelope_from: str | None = Field(default=None, max_length=320)
    envelope_to: str = "[]"  # JSON list
    status: str = Field(default="stored", max_length=16)  # the queue: ix_messages_queue
    auto: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, sa_column=Column(Text))
    case_id: int | None = Field(default=None, foreign_key="cases.id")  # ix_messages_case_id
    subject: str | None = Field(default=None, sa_column=Column(Text))  # masked
    text: str | None = Field(default=None, sa_column=Column(Text))  # clean, masked
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Draft(SQLModel, table=True):
    __tablename__ = "drafts"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=32)
    language: str = Field(max_length=8)
    subject: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    quoted_sections: str = "[]"  # JSON list of section ids
    state: str = Field(default="pending", index=True, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    # The text dsr wrote, kept when staff approved an edited body (`drafts approve
    # --edit-file`): the earlier version stays visible; None when the draft was not edited.
    generated_body: str | None = Field(default=None, sa_column=Column(Text))


class Event(SQLModel, table=True):
    """The audit trail: append-only (the migration installs triggers refusing UPDATE/DELETE),
    and hash-chained per case (store/audit.py), so an edit behind the triggers' back shows."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    kind: str = Field(max_length=64)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON object
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)


class AuditChain(SQLModel, table=True):
    """The head of one hash chain: a case's events, or the events that belong to no case.
    Keeping the count and the newest hash here is what shows a removed newest event."""

    __tablename__ = "audit_chains"

    chain: str = Field(primary_key=True, max_length=32)  # "case:<id>" or "none"
    case_id: int | None = Field(default=None, foreign_key="cases.id", unique=True)
    events: int = 0
    last_hash: str = Field(max_length=64)


class Verification(SQLModel, table=True):
    """One-time codes are kept only as salted hashes."""

    __tablename__ = "verifications"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    method: str = Field(max_length=32)
    sent_to: str | None = Field(default=None, max_length=320)
    code_hash: str | None = Field(default=None, max_length=128)
    salt: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    sends: int = 0
    last_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_by: str | None = Field(default=None, max_length=200)


class Escalation(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("case_id", "step", name="uq_escalations_case_step"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    step: str = Field(max_length=64)
    due_on: date
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Outbox(SQLModel, table=True):
    """Everything we send goes through here: one row per message, retried until delivered."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(unique=True, max_length=512)
    kind: str = Field(max_length=16)  # email | slack
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    draft_id: int | None = Field(default=None, foreign_key="drafts.id")
    recipient: str | None = Field(default=None, max_length=320)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(default="pending", index=True, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ErasureTask(SQLModel, table=True):
    """One row per system an erasure must be carried out in, settled as done or kept by law."""

    __tablename__ = "erasure_tasks"
    __table_args__ = (UniqueConstraint("case_id", "system", name="uq_erasure_case_system"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    system: str = Field(max_length=200)
    state: str = Field(default="pending", max_length=16)  # pending | done | kept | suppressed
    law: str | None = Field(default=None, max_length=200)
    kept_until: date | None = None  # with kept: the end of the retention the law demands
    note: str | None = Field(default=None, sa_column=Column(Text))
    settled_by: str | None = Field(default=None, max_length=200)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MailboxState(SQLModel, table=True):
    """Where the IMAP listener is in one mailbox folder: its UIDVALIDITY and the highest UID
    stored. Advanced in the same transaction that stores the message, so a UID at or below
    `last_uid` is stored; a new UIDVALIDITY means the UIDs start over (rescan, dedup by hash)."""

    __tablename__ = "mailbox_state"
    __table_args__ = (UniqueConstraint("host", "username", "folder", name="uq_mailbox_state_box"),)

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=255)
    username: str = Field(max_length=320)
    folder: str = Field(max_length=255)
    # Both are unsigned 32-bit in IMAP: wider than a signed INTEGER on PostgreSQL.
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ChecklistItem(SQLModel, table=True):
    """One system of a case's access collection (the copy, Art. 15(3)) or of its marketing
    suppression (Art. 21(3)): staff tick each, and the reply says only what was ticked."""

    __tablename__ = "checklist_items"
    __table_args__ = (UniqueConstraint("case_id", "kind", "system",
                                       name="uq_checklist_case_kind_system"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=16)  # access | suppression
    system: str = Field(max_length=200)
    state: str = Field(default="pending", max_length=16)  # pending | done | none
    note: str | None = Field(default=None, sa_column=Column(Text))
    settled_by: str | None = Field(default=None, max_length=200)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Digest(SQLModel, table=True):
    """One managers' digest per period (and organisation): the unique period is the claim, so
    several instances send it once."""

    __tablename__ = "digests"

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    open_cases: int = 0


class SchedulerState(SQLModel, table=True):
    """Small facts the scheduler keeps between runs, e.g. the calendar the case dates were
    computed on (so a changed calendar is noticed once, at start or at the next sweep)."""

    __tablename__ = "scheduler_state"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
