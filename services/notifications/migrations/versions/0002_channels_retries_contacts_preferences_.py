"""channels, retries, contacts, preferences, reminders

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ntf_contact',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('parent_id', sa.String(length=64), nullable=True),
    sa.Column('email', sa.String(length=300), nullable=True),
    sa.Column('has_ioffice', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('unit_id')
    )
    op.create_table('ntf_expectation',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=True),
    sa.Column('reported', sa.Boolean(), nullable=False),
    sa.Column('reminded_at_lead', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('plan_id', 'phase_seq', 'unit_id')
    )
    with op.batch_alter_table('ntf_expectation', schema=None) as batch_op:
        batch_op.create_index('ix_ntf_expectation_due', ['reported', 'due_on'], unique=False)

    op.create_table('ntf_plan',
    sa.Column('plan_id', sa.String(length=64), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('plan_id')
    )
    op.create_table('ntf_preference',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('opted_out', sa.JSON(), nullable=False),
    sa.Column('digest', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('unit_id')
    )
    with op.batch_alter_table('ntf_delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body', sa.String(), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('plan_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('external_status', sa.String(length=300), nullable=False, server_default=sa.text("''")))
        batch_op.create_index('ix_ntf_delivery_due', ['state', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ntf_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_ntf_delivery_due')
        batch_op.drop_column('external_status')
        batch_op.drop_column('last_error')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('plan_id')
        batch_op.drop_column('body')

    op.drop_table('ntf_preference')
    op.drop_table('ntf_plan')
    with op.batch_alter_table('ntf_expectation', schema=None) as batch_op:
        batch_op.drop_index('ix_ntf_expectation_due')

    op.drop_table('ntf_expectation')
    op.drop_table('ntf_contact')
