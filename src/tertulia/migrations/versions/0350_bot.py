"""assistant_bot_turns, and the bot's hours and pause carry-over on assistant_channel_settings: the
bot answering customers

Revision ID: 0350_bot
Revises: 0340_notifications
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0350_bot"
down_revision: str | None = "0340_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("assistant_channel_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hours", sa.String(length=20), nullable=False, server_default="always"))
        batch_op.add_column(sa.Column("keep_paused", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "assistant_bot_turns",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("entry_id", ID, nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("reply_message_id", ID, nullable=True),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assistant_bot_turns_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_assistant_bot_turns_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_assistant_bot_turns_message_id_messages"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reply_message_id"],
            ["messages.id"],
            name=op.f("fk_assistant_bot_turns_reply_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_bot_turns")),
        sa.UniqueConstraint("message_id", name="uq_assistant_bot_turns_message_id"),
    )
    op.create_index("ix_assistant_bot_turns_conversation_id", "assistant_bot_turns", ["conversation_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_assistant_bot_turns_conversation_id", table_name="assistant_bot_turns")
    op.drop_table("assistant_bot_turns")
    with op.batch_alter_table("assistant_channel_settings", schema=None) as batch_op:
        batch_op.drop_column("keep_paused")
        batch_op.drop_column("hours")
