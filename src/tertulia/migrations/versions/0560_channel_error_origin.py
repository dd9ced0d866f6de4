"""channels: whether the last error came from a status callback

A failure the provider reports later, in a status callback (an unpaid account whose every send is
accepted and then fails), is ended only by a callback showing the channel works (a delivered or read
status, a customer's message), not by the next accepted send (channels/health.py).

Revision ID: 0560_channel_error_origin
Revises: 0550_report_tag_filter
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0560_channel_error_origin"
down_revision: str | None = "0550_report_tag_filter"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("last_error_from_status", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("last_error_from_status")
