"""inbound_callbacks.lease_until: a task claims the callbacks it writes for a while

Callbacks are claimed (leased) in one short transaction, written in another and deleted in a third,
so that on SQLite they can wait in a file of their own; a callback whose task died is claimed again
once its lease has run out.

Revision ID: 0140_callback_leases
Revises: 0110_channel_secrets
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0140_callback_leases"
down_revision: str | None = "0110_channel_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_callbacks") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_callbacks") as batch:
        batch.drop_column("lease_until")
