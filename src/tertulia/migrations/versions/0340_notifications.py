"""Activity status (users.status_choice, workspaces.away_after_minutes, user_status_periods) and
in-app notifications (notifications, notification_preferences)

Revision ID: 0340_notifications
Revises: 0330_api_token_scopes
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0340_notifications"
down_revision: str | None = "0330_api_token_scopes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tertulia.kit.models.UTCDateTime(), nullable=nullable)


def _status(name: str) -> sa.Enum:
    return sa.Enum("online", "away", "busy", "offline", name=name, native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_choice", _status("status_choice"), nullable=False, server_default="online"))
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("away_after_minutes", sa.Integer(), nullable=False, server_default=sa.text("10")))
    op.create_table(
        "user_status_periods",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("status", _status("period_status"), nullable=False),
        _time("started_at", False),
        _time("ended_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_status_periods_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_status_periods")),
    )
    op.create_index("ix_user_status_periods_user_id_started_at", "user_status_periods", ["user_id", "started_at"])
    op.create_table(
        "notifications",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(100), nullable=False),
        sa.Column("event_id", ID, nullable=True),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("params", tertulia.kit.models.JSONType, nullable=False),
        sa.Column("link", sa.String(300), nullable=False),
        _time("created_at", False),
        _time("read_at"),
        sa.Column("in_app", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("email_state", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_notifications_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "dedupe_key", name=op.f("uq_notifications_user_id_dedupe_key")),
    )
    op.create_index("ix_notifications_user_id_workspace_id_id", "notifications", ["user_id", "workspace_id", "id"])
    op.create_table(
        "notification_preferences",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("in_app", sa.Boolean(), nullable=False),
        sa.Column("browser", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_preferences_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
        sa.UniqueConstraint("user_id", "kind", name=op.f("uq_notification_preferences_user_id_kind")),
    )
    op.create_table(
        "notification_email_settings",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        _time("digest_sent_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_email_settings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_email_settings")),
        sa.UniqueConstraint("user_id", name=op.f("uq_notification_email_settings_user_id")),
    )


def downgrade() -> None:
    op.drop_table("notification_email_settings")
    op.drop_table("notification_preferences")
    op.drop_index("ix_notifications_user_id_workspace_id_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_user_status_periods_user_id_started_at", table_name="user_status_periods")
    op.drop_table("user_status_periods")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("away_after_minutes")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("status_choice")
