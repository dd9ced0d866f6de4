"""inbound_callbacks: verified provider callbacks waiting for their queued task

The callback endpoint answers as soon as the request is verified and stored here; a queue task
parses it and writes its messages, then deletes the row.

Revision ID: 0095_inbound_callbacks
Revises: 0090_agents_see_unassigned
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0095_inbound_callbacks"
down_revision: str | None = "0090_agents_see_unassigned"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inbound_callbacks",
        sa.Column("id", BigID, nullable=False),
        sa.Column(
            "workspace_id",
            BigID,
            sa.ForeignKey("workspaces.id", ondelete="CASCADE", name="fk_inbound_callbacks_workspace_id_workspaces"),
            nullable=False,
        ),
        sa.Column(
            "channel_id",
            BigID,
            sa.ForeignKey("channels.id", ondelete="CASCADE", name="fk_inbound_callbacks_channel_id_channels"),
            nullable=False,
        ),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("headers", JSONType, nullable=False),
        sa.Column("query", JSONType, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_callbacks"),
    )
    op.create_index("ix_inbound_callbacks_channel_id", "inbound_callbacks", ["channel_id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_callbacks_channel_id", table_name="inbound_callbacks")
    op.drop_table("inbound_callbacks")
