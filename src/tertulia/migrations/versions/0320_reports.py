"""report_cursor, report_conversations, report_rollups: the reports' facts and rollups

Revision ID: 0320_reports
Revises: 0310_knowledge
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0320_reports"
down_revision: str | None = "0310_knowledge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tertulia.kit.models.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "report_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("last_event_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_report_cursor")),
    )
    op.create_table(
        "report_conversations",
        sa.Column("conversation_id", ID, autoincrement=False, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("assignee_id", ID, nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        _time("opened_at", False),
        _time("period_started_at", False),
        _time("waiting_since"),
        sa.Column("responded", sa.Boolean(), nullable=False),
        sa.Column("first_response_seconds", sa.Float(), nullable=True),
        _time("first_assigned_at"),
        sa.Column("first_assignee_id", ID, nullable=False),
        _time("closed_at"),
        sa.Column("resolution_seconds", sa.Float(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("incoming_count", sa.Integer(), nullable=False),
        sa.Column("outgoing_count", sa.Integer(), nullable=False),
        sa.Column("merged_into_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_report_conversations")),
    )
    op.create_index(
        "ix_report_conversations_workspace_id_opened_at", "report_conversations", ["workspace_id", "opened_at"]
    )
    op.create_index("ix_report_conversations_contact_id", "report_conversations", ["contact_id"])
    op.create_table(
        "report_rollups",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("period", sa.String(13), nullable=False),
        sa.Column("metric", sa.String(24), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("count", ID, nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_rollups")),
        sa.UniqueConstraint(
            "workspace_id",
            "grain",
            "metric",
            "period",
            "label",
            "channel_id",
            "team_id",
            "user_id",
            "category_id",
            "source",
            "bucket",
            name="uq_report_rollups_key",
        ),
    )


def downgrade() -> None:
    op.drop_table("report_rollups")
    op.drop_index("ix_report_conversations_contact_id", table_name="report_conversations")
    op.drop_index("ix_report_conversations_workspace_id_opened_at", table_name="report_conversations")
    op.drop_table("report_conversations")
    op.drop_table("report_cursor")
