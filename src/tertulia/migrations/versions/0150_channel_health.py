"""channels: when the provider was last heard from and what went wrong last

Settings > Channels shows per channel whether it works: the last callback received, the last message
the provider accepted, and the last error with its time.

Revision ID: 0150_channel_health
Revises: 0140_callback_leases
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0150_channel_health"
down_revision: str | None = "0140_callback_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("last_callback_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("last_error_at")
        batch.drop_column("last_error")
        batch.drop_column("last_sent_at")
        batch.drop_column("last_callback_at")
