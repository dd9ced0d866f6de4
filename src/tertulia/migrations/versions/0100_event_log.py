"""event log: events and consumer_positions

`events` is the durable, typed event log (events/models.py); `consumer_positions` holds each
consumer's position and lease. SQLite gets AUTOINCREMENT so pruned ids are never handed out again.

Revision ID: 0100_event_log
Revises: 0095_inbound_callbacks
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tertulia.kit.models

revision: str = "0100_event_log"
down_revision: str | None = "0095_inbound_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("contact_id", ID, nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_created_at", "events", ["created_at"], unique=False)
    op.create_table(
        "consumer_positions",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_event_id", ID, nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_consumer_positions")),
    )


def downgrade() -> None:
    op.drop_table("consumer_positions")
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_table("events")
