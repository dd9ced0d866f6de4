"""business hours (versions per workspace and team), auto-close, away message, closing source

Revision ID: 0290_business_hours
Revises: 0280_outgoing_webhooks
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0290_business_hours"
down_revision: str | None = "0280_outgoing_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tertulia.kit.models.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no foreign key) on both databases: no table rebuild on SQLite.
    op.add_column("workspaces", sa.Column("auto_close_minutes", sa.Integer(), nullable=True))
    op.add_column(
        "conversations",
        sa.Column(
            "closing_source",
            sa.Enum(
                "user",
                "api",
                "workflow",
                "bot",
                "system",
                "auto-close",
                name="closing_source",
                native_enum=False,
                length=16,
            ),
            nullable=True,
        ),
    )
    op.add_column("conversations", _time("last_agent_message_at"))
    op.create_table(
        "business_hours_versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=True),
        _time("valid_from", False),
        sa.Column("schedule", tertulia.kit.models.JSONType, nullable=True),
        sa.Column("created_by_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_business_hours_versions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_business_hours_versions_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_business_hours_versions_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_hours_versions")),
    )
    op.create_index(
        "ix_business_hours_versions_ws_team_from",
        "business_hours_versions",
        ["workspace_id", "team_id", "valid_from"],
    )
    op.create_table(
        "away_messages",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _time("updated_at", False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_away_messages_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_away_messages")),
    )
    op.create_table(
        "away_message_sends",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("period", sa.String(40), nullable=False),
        sa.Column("message_id", ID, nullable=True),
        _time("created_at", False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_away_message_sends_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_away_message_sends_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_away_message_sends_message_id_messages"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_away_message_sends")),
        sa.UniqueConstraint("conversation_id", "period", name=op.f("uq_away_message_sends_conversation_id_period")),
    )
    op.create_index("ix_away_message_sends_workspace_id", "away_message_sends", ["workspace_id"])


def downgrade() -> None:
    op.drop_index("ix_away_message_sends_workspace_id", table_name="away_message_sends")
    op.drop_table("away_message_sends")
    op.drop_table("away_messages")
    op.drop_index("ix_business_hours_versions_ws_team_from", table_name="business_hours_versions")
    op.drop_table("business_hours_versions")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("last_agent_message_at")
        batch.drop_column("closing_source")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("auto_close_minutes")
