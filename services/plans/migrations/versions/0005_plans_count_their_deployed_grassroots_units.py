"""plans count their grassroots units, sent and deployed

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grassroots_sent', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('grassroots_deployed', sa.Integer(), server_default='0', nullable=False))
    # The plans issued so far are counted from their targets.
    op.execute(
        "UPDATE plan SET "
        "grassroots_sent = (SELECT count(*) FROM plan_target t "
        "WHERE t.plan_id = plan.id AND t.level = 'grassroots'), "
        "grassroots_deployed = (SELECT count(*) FROM plan_target t "
        "WHERE t.plan_id = plan.id AND t.level = 'grassroots' AND t.acknowledged_at IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.drop_column('grassroots_deployed')
        batch_op.drop_column('grassroots_sent')
