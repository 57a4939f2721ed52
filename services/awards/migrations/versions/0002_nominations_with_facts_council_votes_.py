"""nominations with facts, council votes, decisions, units and reports

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
    op.create_table('awd_decision',
    sa.Column('nomination_id', sa.String(length=64), nullable=False),
    sa.Column('number', sa.String(length=100), nullable=False),
    sa.Column('decided_by_unit_id', sa.String(length=64), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('decided_on', sa.Date(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('revoked_reason', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('nomination_id'),
    sa.UniqueConstraint('decided_by_unit_id', 'year', 'seq', name='uq_decision_number')
    )
    op.create_table('awd_report',
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('phase_seq', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Boolean(), nullable=False),
    sa.Column('first_submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('campaign_id', 'unit_id', 'phase_seq')
    )
    op.create_table('awd_unit',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('parent_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('unit_id')
    )
    op.create_table('awd_vote',
    sa.Column('nomination_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('yes', sa.Integer(), nullable=False),
    sa.Column('no', sa.Integer(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nomination_id', 'unit_id')
    )
    # Nominations made before this revision: the year they were made, no facts, a path of their two units.
    with op.batch_alter_table('awd_nomination', schema=None) as batch_op:
        batch_op.add_column(sa.Column('year', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('nominee_unit_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('achievement_ids', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('facts', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('path', sa.JSON(), nullable=False, server_default='[]'))
    nominations = sa.table('awd_nomination', sa.column('year', sa.Integer), sa.column('created_at', sa.DateTime))
    op.execute(nominations.update().values(year=sa.extract('year', nominations.c.created_at)))
    with op.batch_alter_table('awd_nomination', schema=None) as batch_op:
        batch_op.alter_column('year', existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table('awd_plan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phases', sa.JSON(), nullable=False, server_default='[]'))



def downgrade() -> None:
    with op.batch_alter_table('awd_plan', schema=None) as batch_op:
        batch_op.drop_column('phases')

    with op.batch_alter_table('awd_nomination', schema=None) as batch_op:
        batch_op.drop_column('path')
        batch_op.drop_column('facts')
        batch_op.drop_column('achievement_ids')
        batch_op.drop_column('nominee_unit_id')
        batch_op.drop_column('year')

    op.drop_table('awd_vote')
    op.drop_table('awd_unit')
    op.drop_table('awd_report')
    op.drop_table('awd_decision')
