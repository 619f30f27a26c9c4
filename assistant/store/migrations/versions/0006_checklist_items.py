"""checklist_items: the access collection and the marketing suppression, one row per system

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'checklist_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('settled_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('settled_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('case_id', 'kind', 'system', name='uq_checklist_case_kind_system'),
    )
    op.create_index('ix_checklist_items_case_id', 'checklist_items', ['case_id'])


def downgrade() -> None:
    op.drop_index('ix_checklist_items_case_id', table_name='checklist_items')
    op.drop_table('checklist_items')
