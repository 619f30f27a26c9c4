"""cases.assignee: who on the staff carries the case (escalations mention them)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch: on SQLite a batch copies `cases` into a new table, which the
# events' foreign keys (and their append-only triggers) do not allow.
def upgrade() -> None:
    op.add_column('cases', sa.Column('assignee', sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.execute('ALTER TABLE cases DROP COLUMN assignee')  # SQLite 3.35 and later, PostgreSQL
