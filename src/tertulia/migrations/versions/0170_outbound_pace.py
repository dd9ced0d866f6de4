"""outbox: the pace log shared by every worker (sends per channel and per recipient)

Channels such as WhatsApp (80 messages a second per number, about one every 6 seconds to the same
customer) and Telegram are paced by queueing; the recent sends are kept here so that several worker
processes count the same sends.

Revision ID: 0170_outbound_pace
Revises: 0150_channel_health
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0170_outbound_pace"
down_revision: str | None = "0150_channel_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_pace",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("sent_at", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_outbound_pace")),
    )
    op.create_index(op.f("ix_outbound_pace_expires_at"), "outbound_pace", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_outbound_pace_expires_at"), table_name="outbound_pace")
    op.drop_table("outbound_pace")
