"""scheduler: the sweep's index, the digests claimed per period, the calendar the dates were computed on

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The sweep asks for open cases due before a date: a partial index holds only open cases, so a
# million answered ones cost nothing (the same predicate is in the sweep's query).
OPEN = "state NOT IN ('answered', 'closed', 'rejected')"


def upgrade() -> None:
    op.create_index('ix_cases_open_due', 'cases', ['due'],
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))
    op.create_table(
        'digests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('open_cases', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('period', name='uq_digests_period'),
    )
    op.create_table(
        'scheduler_state',
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('scheduler_state')
    op.drop_table('digests')
    op.drop_index('ix_cases_open_due', table_name='cases')
