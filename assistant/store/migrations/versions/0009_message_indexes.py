"""messages: only the indexes something looks up (the listener writes each before its 250)

The hash index was never read (dedup_key holds the hash); the status index is replaced by the
worker's queue, a partial index over the messages still `stored`; the case index leaves out
the messages that belong to no case yet.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_STORED = sa.text("status = 'stored'")
_IN_CASE = sa.text("case_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index('ix_messages_sha256', table_name='messages')
    op.drop_index('ix_messages_status', table_name='messages')
    op.drop_index('ix_messages_case_id', table_name='messages')
    op.create_index('ix_messages_queue', 'messages', ['received_at', 'id'],
                    sqlite_where=_STORED, postgresql_where=_STORED)
    op.create_index('ix_messages_case_id', 'messages', ['case_id'],
                    sqlite_where=_IN_CASE, postgresql_where=_IN_CASE)


def downgrade() -> None:
    op.drop_index('ix_messages_case_id', table_name='messages')
    op.drop_index('ix_messages_queue', table_name='messages')
    op.create_index('ix_messages_case_id', 'messages', ['case_id'])
    op.create_index('ix_messages_status', 'messages', ['status'])
    op.create_index('ix_messages_sha256', 'messages', ['sha256'])
