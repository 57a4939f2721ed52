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
    op.create_table('rep_aggregate',
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('parent_unit_id', sa.String(length=64), nullable=True),
    sa.Column('expected', sa.Integer(), nullable=False),
    sa.Column('received', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Integer(), nullable=False),
    sa.Column('late', sa.Integer(), nullable=False),
    sa.Column('missing', sa.Integer(), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('campaign_id', 'phase_seq', 'unit_id')
    )
    op.create_table('rep_consolidation',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.Column('automatic', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'phase_seq', 'unit_id')
    )
    op.create_table('rep_contribution',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('overdue', sa.Boolean(), nullable=False),
    sa.Column('applied', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'phase_seq', 'unit_id')
    )
    op.create_table('rep_deadline_check',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'phase_seq')
    )
    op.create_table('rep_plan',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('parent_plan_id', sa.String(length=64), nullable=True),
    sa.Column('issuer_unit_id', sa.String(length=64), nullable=False),
    sa.Column('number', sa.String(length=100), nullable=False),
    sa.Column('report_after_phase_end', sa.Boolean(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('title', sa.String(length=1000), nullable=False),
    sa.Column('chain', sa.JSON(), nullable=False),
    sa.Column('phases', sa.JSON(), nullable=False),
    sa.Column('indicators', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('plan_id')
    )
    with op.batch_alter_table('rep_plan', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rep_plan_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index('ix_rep_plan_parent', ['parent_plan_id', 'issuer_unit_id'], unique=False)

    op.create_table('rep_recipient',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'unit_id')
    )
    with op.batch_alter_table('rep_recipient', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rep_recipient_unit_id'), ['unit_id'], unique=False)

    op.create_table('rep_rejection',
    sa.Column('report_id', sa.String(length=200), nullable=False),
    sa.Column('plan_id', sa.String(length=64), nullable=True),
    sa.Column('phase_seq', sa.Integer(), nullable=True),
    sa.Column('unit_id', sa.String(length=64), nullable=True),
    sa.Column('reasons', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('report_id')
    )
    with op.batch_alter_table('rep_rejection', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rep_rejection_unit_id'), ['unit_id'], unique=False)

    op.create_table('rep_report_version',
    sa.Column('report_id', sa.String(length=64), nullable=False),
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('narrative', sa.String(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('report_id')
    )
    with op.batch_alter_table('rep_report_version', schema=None) as batch_op:
        batch_op.create_index('ix_rep_version_key', ['plan_id', 'phase_seq', 'unit_id'], unique=False)

    op.create_table('rep_review',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('by_unit_id', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'phase_seq', 'unit_id')
    )
    op.create_table('rep_target',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'phase_seq', 'unit_id')
    )
    with op.batch_alter_table('rep_target', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rep_target_unit_id'), ['unit_id'], unique=False)

    op.create_table('rep_unit',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('unit_id')
    )
    op.create_table('rep_unit_parent',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('parent_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('unit_id', 'valid_from')
    )


def downgrade() -> None:
    op.drop_table('rep_unit_parent')
    op.drop_table('rep_unit')
    with op.batch_alter_table('rep_target', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rep_target_unit_id'))

    op.drop_table('rep_target')
    op.drop_table('rep_review')
    with op.batch_alter_table('rep_report_version', schema=None) as batch_op:
        batch_op.drop_index('ix_rep_version_key')

    op.drop_table('rep_report_version')
    with op.batch_alter_table('rep_rejection', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rep_rejection_unit_id'))

    op.drop_table('rep_rejection')
    with op.batch_alter_table('rep_recipient', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rep_recipient_unit_id'))

    op.drop_table('rep_recipient')
    with op.batch_alter_table('rep_plan', schema=None) as batch_op:
        batch_op.drop_index('ix_rep_plan_parent')
        batch_op.drop_index(batch_op.f('ix_rep_plan_campaign_id'))

    op.drop_table('rep_plan')
    op.drop_table('rep_deadline_check')
    op.drop_table('rep_contribution')
    op.drop_table('rep_consolidation')
    op.drop_table('rep_aggregate')
    drop_plumbing_tables()
