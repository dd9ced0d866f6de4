"""data_exports: Settings > Data export jobs; report_items: the occurrences behind report bars

Revision ID: 0380_data_exports
Revises: 0370_workflow_queue
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0380_data_exports"
down_revision: str | None = "0370_workflow_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.create_table(
        "data_exports",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("files", tertulia.kit.models.JSONType, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued", "running", "done", "failed", "expired", name="export_status", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("processed_rows", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("file_path", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", ID, nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("started_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("finished_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("expires_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_data_exports_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_data_exports_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_exports")),
    )
    with op.batch_alter_table("data_exports", schema=None) as batch_op:
        batch_op.create_index("ix_data_exports_workspace_id_id", ["workspace_id", "id"], unique=False)
        batch_op.create_index(
            "uq_data_exports_active_workspace",
            ["workspace_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )
    op.create_table(
        "report_items",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("metric", sa.String(length=24), nullable=False),
        sa.Column("period", sa.String(length=13), nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_items")),
    )
    with op.batch_alter_table("report_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_items_workspace_id_metric_period", ["workspace_id", "metric", "period"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("report_items", schema=None) as batch_op:
        batch_op.drop_index("ix_report_items_workspace_id_metric_period")
    op.drop_table("report_items")
    with op.batch_alter_table("data_exports", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_data_exports_active_workspace", sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE)
        )
        batch_op.drop_index("ix_data_exports_workspace_id_id")
    op.drop_table("data_exports")
