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
    op.create_table('ntf_delivery',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('trigger_event_id', sa.String(length=200), nullable=False),
    sa.Column('trigger_type', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('recipient_unit_id', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=1000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('trigger_event_id', 'recipient_unit_id', 'channel', name='uq_delivery_once')
    )
    with op.batch_alter_table('ntf_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ntf_delivery_recipient_unit_id'), ['recipient_unit_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ntf_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ntf_delivery_recipient_unit_id'))

    op.drop_table('ntf_delivery')
    drop_plumbing_tables()
