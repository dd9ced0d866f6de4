"""workflow_queue: runs whose assign step waits for someone to qualify

Revision ID: 0370_workflow_queue
Revises: 0360_workflow_triggers
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0370_workflow_queue"
down_revision: str | None = "0360_workflow_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflow_queue",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("pool", sa.String(length=200), nullable=False),
        sa.Column("queued_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("attempted_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_queue_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_runs.id"], name=op.f("fk_workflow_queue_run_id_workflow_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_queue")),
        sa.UniqueConstraint("run_id", name="uq_workflow_queue_run_id"),
    )
    with op.batch_alter_table("workflow_queue", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workflow_queue_workspace_id_pool_queued_at", ["workspace_id", "pool", "queued_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("workflow_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_queue_workspace_id_pool_queued_at")
    op.drop_table("workflow_queue")
