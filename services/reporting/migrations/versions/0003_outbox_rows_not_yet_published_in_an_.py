"""outbox rows not yet published in an index of their own

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from shared.migrations import drop_unpublished_outbox_index, index_unpublished_outbox_rows

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_unpublished_outbox_rows()


def downgrade() -> None:
    drop_unpublished_outbox_index()
