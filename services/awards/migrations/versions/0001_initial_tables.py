"""initial tables

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_plumbing_tables, drop_plumbing_tables

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table('awd_nomination',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('to_unit_id', sa.String(length=64), nullable=False),
    sa.Column('nominee_kind', sa.String(length=20), nullable=False),
    sa.Column('nominee_name', sa.String(length=300), nullable=False),
    sa.Column('award', sa.String(length=300), nullable=False),
    sa.Column('achievements', sa.String(), nullable=False),
    sa.Column('direct_production', sa.Boolean(), nullable=False),
    sa.Column('small_collective', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('awd_nomination', schema=None) as batch_op:
        batch_op.create_index('ix_awd_nomination_plan_unit', ['plan_id', 'unit_id'], unique=False)

    op.create_table('awd_plan',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('issuer_unit_id', sa.String(length=64), nullable=False),
    sa.Column('target_unit_ids', sa.JSON(), nullable=False),
    sa.Column('quota', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('plan_id')
    )


def downgrade() -> None:
    op.drop_table('awd_plan')
    with op.batch_alter_table('awd_nomination', schema=None) as batch_op:
        batch_op.drop_index('ix_awd_nomination_plan_unit')

    op.drop_table('awd_nomination')
    drop_plumbing_tables()
