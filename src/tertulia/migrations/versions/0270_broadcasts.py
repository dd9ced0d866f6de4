"""broadcasts: drafts, schedules and sends to a segment, with a per-recipient snapshot

`broadcasts` holds the draft (audience, channel, content per channel type, schedule) and its status;
`broadcast_recipients` the audience snapshotted when it starts, one row per contact, with why a
contact was excluded or the message written for them; `broadcast_settings` the workspace's
unsubscribe keywords; `broadcast_opt_outs` the contacts who asked for no more broadcasts.

Revision ID: 0270_broadcasts
Revises: 0250_email_channel
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0270_broadcasts"
down_revision: str | None = "0250_email_channel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "broadcast_settings",
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("unsubscribe_keywords", tertulia.kit.models.JSONType, nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_broadcast_settings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_broadcast_settings")),
    )
    op.create_table(
        "broadcasts",
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("labels", tertulia.kit.models.JSONType, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "scheduled",
                "sending",
                "paused",
                "completed",
                "failed",
                "cancelled",
                name="broadcast_status",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.String(length=40), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column(
            "audience",
            sa.Enum("segment", "all", "resend", name="broadcast_audience", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("segment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("exclude_segment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("exclude_segment_chosen", sa.Boolean(), nullable=False),
        sa.Column(
            "channel_mode",
            sa.Enum("specific", "last_interacted", name="broadcast_channel_mode", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("channel_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("content", tertulia.kit.models.JSONType, nullable=False),
        sa.Column(
            "over_limit",
            sa.Enum("refuse", "partial", name="broadcast_over_limit", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("reply_window_hours", sa.Integer(), nullable=False),
        sa.Column("reply_workflow_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("scheduled_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("copied_from_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("resend_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_broadcasts_channel_id_channels"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["copied_from_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcasts_copied_from_id_broadcasts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_broadcasts_created_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["exclude_segment_id"],
            ["segments.id"],
            name=op.f("fk_broadcasts_exclude_segment_id_segments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resend_of_id"], ["broadcasts.id"], name=op.f("fk_broadcasts_resend_of_id_broadcasts"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_broadcasts_segment_id_segments"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_broadcasts_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.create_index("ix_broadcasts_status_scheduled_at", ["status", "scheduled_at"], unique=False)
        batch_op.create_index("ix_broadcasts_workspace_id_id", ["workspace_id", "id"], unique=False)

    op.create_table(
        "broadcast_opt_outs",
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("keyword", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_broadcast_opt_outs_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_broadcast_opt_outs_message_id_messages"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_broadcast_opt_outs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_opt_outs")),
        sa.UniqueConstraint("contact_id", name=op.f("uq_broadcast_opt_outs_contact_id")),
    )
    with op.batch_alter_table("broadcast_opt_outs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcast_opt_outs_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "broadcast_recipients",
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("broadcast_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "waiting",
                "excluded",
                "messaged",
                "skipped",
                name="broadcast_recipient_state",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("needs_template", sa.Boolean(), nullable=False),
        sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("messaged_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("replied_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reply_message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_recipients_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_broadcast_recipients_channel_id_channels"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_broadcast_recipients_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_broadcast_recipients_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reply_message_id"],
            ["messages.id"],
            name=op.f("fk_broadcast_recipients_reply_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_broadcast_recipients_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_recipients")),
        sa.UniqueConstraint("broadcast_id", "contact_id", name=op.f("uq_broadcast_recipients_broadcast_id_contact_id")),
    )
    with op.batch_alter_table("broadcast_recipients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_broadcast_recipients_broadcast_id_state_channel_id",
            ["broadcast_id", "state", "channel_id", "id"],
            unique=False,
        )
        batch_op.create_index("ix_broadcast_recipients_contact_id_replied", ["contact_id", "replied_at"], unique=False)
        batch_op.create_index("ix_broadcast_recipients_message_id", ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("broadcast_recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcast_recipients_message_id")
        batch_op.drop_index("ix_broadcast_recipients_contact_id_replied")
        batch_op.drop_index("ix_broadcast_recipients_broadcast_id_state_channel_id")

    op.drop_table("broadcast_recipients")
    with op.batch_alter_table("broadcast_opt_outs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_opt_outs_workspace_id"))

    op.drop_table("broadcast_opt_outs")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcasts_workspace_id_id")
        batch_op.drop_index("ix_broadcasts_status_scheduled_at")

    op.drop_table("broadcasts")
    op.drop_table("broadcast_settings")
