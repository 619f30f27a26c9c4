"""audit trail as hash chains; the append-only guard closed against REPLACE and TRUNCATE

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Each event gets `prev_hash` and `hash`; `audit_chains` keeps each chain's length and newest
hash. Events written before this revision are chained here, in the order they were written.
The hash form is copied from assistant/store/audit.py on purpose: a migration must keep
computing what it computed the day it shipped.
"""
import hashlib
import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_GENESIS = "0" * 64
_APPEND_ONLY = "events are append-only: the audit trail cannot be changed"


def _canonical_at(at: datetime | str) -> str:
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hash(case_id, at, actor, kind, detail, prev_hash) -> str:  # noqa: ANN001
    form = ["dsr-audit-v1", case_id, _canonical_at(at), actor, kind, detail, prev_hash]
    return hashlib.sha256(json.dumps(form, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _chain_existing_events() -> None:
    """Hash the events already written, chain by chain in id order, and record each head."""
    bind = op.get_bind()
    events = sa.table("events", sa.column("id", sa.Integer), sa.column("case_id", sa.Integer),
                      sa.column("at"), sa.column("actor", sa.String), sa.column("kind", sa.String),
                      sa.column("detail", sa.Text), sa.column("prev_hash", sa.String),
                      sa.column("hash", sa.String))
    chains = sa.table("audit_chains", sa.column("chain", sa.String), sa.column("case_id", sa.Integer),
                      sa.column("events", sa.Integer), sa.column("last_hash", sa.String))
    heads: dict[int | None, tuple[int, str]] = {}
    rows = bind.execute(sa.select(events).order_by(events.c.id)).all()
    for row in rows:
        count, prev = heads.get(row.case_id, (0, _GENESIS))
        digest = _hash(row.case_id, row.at, row.actor, row.kind, row.detail, prev)
        bind.execute(events.update().where(events.c.id == row.id).values(prev_hash=prev, hash=digest))
        heads[row.case_id] = (count + 1, digest)
    for case_id, (count, last) in heads.items():
        key = f"case:{case_id}" if case_id is not None else "none"
        bind.execute(chains.insert().values(chain=key, case_id=case_id, events=count, last_hash=last))


def _sqlite_guard() -> None:
    """REPLACE INTO deletes the old row without firing DELETE triggers; refuse it at the insert."""
    op.execute(
        "CREATE TRIGGER events_no_replace BEFORE INSERT ON events "
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE id = NEW.id) "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
    )


def _postgresql_guard() -> None:
    """Refuse TRUNCATE too, and fire the triggers ALWAYS: also in a session that set
    session_replication_role = replica (which a superuser can do to skip ordinary triggers)."""
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()"
    )
    op.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only")
    op.execute("ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate")


def upgrade() -> None:
    op.create_table(
        'audit_chains',
        sa.Column('chain', sa.String(length=32), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=True),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.Column('last_hash', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
        sa.PrimaryKeyConstraint('chain'),
        sa.UniqueConstraint('case_id'),
    )
    op.add_column('events', sa.Column('prev_hash', sa.String(length=64), nullable=True))
    op.add_column('events', sa.Column('hash', sa.String(length=64), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER events_no_update")
        _chain_existing_events()
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )
        _sqlite_guard()
    elif dialect == "postgresql":
        op.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        _chain_existing_events()
        _postgresql_guard()
    else:
        _chain_existing_events()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_no_replace")
        op.execute("DROP TRIGGER IF EXISTS events_no_update")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_no_truncate ON events")
        op.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
    op.drop_column('events', 'hash')
    op.drop_column('events', 'prev_hash')
    op.drop_table('audit_chains')
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )
    elif dialect == "postgresql":
        op.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
