"""erasure_tasks.kept_until: how long data kept under a law stays (the reply must say until when)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('erasure_tasks') as batch:
        batch.add_column(sa.Column('kept_until', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('erasure_tasks') as batch:
        batch.drop_column('kept_until')
