"""workflow_hooks, workflow_date_fires and workflow_date_sweeps: the incoming-webhook and date
triggers of workflows

Revision ID: 0360_workflow_triggers
Revises: 0350_bot
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0360_workflow_triggers"
down_revision: str | None = "0350_bot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflow_hooks",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("rotated_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_hooks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_hooks_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_hooks")),
        sa.UniqueConstraint("workflow_id", name="uq_workflow_hooks_workflow_id"),
    )
    op.create_table(
        "workflow_date_fires",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("occurrence", sa.String(length=40), nullable=False),
        sa.Column("fire_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_date_fires_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_date_fires_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_workflow_date_fires_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_date_fires_run_id_workflow_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_date_fires")),
        sa.UniqueConstraint(
            "workflow_id", "contact_id", "occurrence", name="uq_workflow_date_fires_workflow_id_contact_id_occurrence"
        ),
    )
    op.create_index("ix_workflow_date_fires_contact_id", "workflow_date_fires", ["contact_id"], unique=False)
    op.create_table(
        "workflow_date_sweeps",
        sa.Column("workflow_id", ID, autoincrement=False, nullable=False),
        sa.Column("swept_until", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_date_sweeps_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_workflow_date_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("workflow_date_sweeps")
    op.drop_index("ix_workflow_date_fires_contact_id", table_name="workflow_date_fires")
    op.drop_table("workflow_date_fires")
    op.drop_table("workflow_hooks")
