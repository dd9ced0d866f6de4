"""Activity status (users.status_choice, workspaces.away_after_minutes, user_status_periods) and
in-app notifications (notifications, notification_preferences)

Revision ID: 0340_notifications
Revises: 0280_outgoing_webhooks
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0340_notifications"
down_revision: str | None = "0280_outgoing_webhooks"
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


def downgrade() -> None:
    op.drop_index("ix_user_status_periods_user_id_started_at", table_name="user_status_periods")
    op.drop_table("user_status_periods")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("away_after_minutes")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("status_choice")
