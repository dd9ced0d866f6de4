"""workflows, workflow_versions, workflow_runs, workflow_effects, workflow_run_logs: workflows

Revision ID: 0300_workflows
Revises: 0290_business_hours
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0300_workflows"
down_revision: str | None = "0290_business_hours"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = tertulia.kit.models.JSONType


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("draft_version_id", ID, nullable=True),
        sa.Column("published_version_id", ID, nullable=True),
        sa.Column("round_robin", JSON, nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("last_error_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_workflows_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
    )
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.create_index("ix_workflows_workspace_id_id", ["workspace_id", "id"], unique=False)

    op.create_table(
        "workflow_versions",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("trigger_type", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("published_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_versions_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_versions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint("workflow_id", "number", name="uq_workflow_versions_workflow_id_number"),
    )
    with op.batch_alter_table("workflow_versions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workflow_versions_workspace_id_state_trigger_type",
            ["workspace_id", "state", "trigger_type"],
            unique=False,
        )

    op.create_table(
        "workflow_runs",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("active_contact_id", ID, nullable=True),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("inbox", JSON, nullable=False),
        sa.Column("pending_action", JSON, nullable=True),
        sa.Column("due_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("trigger_event_id", ID, nullable=True),
        sa.Column("last_event_id", ID, nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("started_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_workflow_runs_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_workflow_runs_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["workflow_versions.id"],
            name=op.f("fk_workflow_runs_version_id_workflow_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name=op.f("fk_workflow_runs_workflow_id_workflows"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_runs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_runs")),
        sa.UniqueConstraint("workflow_id", "active_contact_id", name="uq_workflow_runs_workflow_id_active_contact_id"),
        sa.UniqueConstraint("workflow_id", "trigger_event_id", name="uq_workflow_runs_workflow_id_trigger_event_id"),
    )
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.create_index("ix_workflow_runs_contact_id_status", ["contact_id", "status"], unique=False)
        batch_op.create_index("ix_workflow_runs_due_at", ["due_at"], unique=False)
        batch_op.create_index("ix_workflow_runs_workflow_id_contact_id", ["workflow_id", "contact_id"], unique=False)
        batch_op.create_index("ix_workflow_runs_workflow_id_id", ["workflow_id", "id"], unique=False)

    op.create_table(
        "workflow_effects",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_runs.id"], name=op.f("fk_workflow_effects_run_id_workflow_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_effects")),
        sa.UniqueConstraint("run_id", "key", name="uq_workflow_effects_run_id_key"),
    )
    op.create_table(
        "workflow_run_logs",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("step_type", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["workflow_runs.id"], name=op.f("fk_workflow_run_logs_run_id_workflow_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_run_logs_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_run_logs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_run_logs")),
    )
    with op.batch_alter_table("workflow_run_logs", schema=None) as batch_op:
        batch_op.create_index("ix_workflow_run_logs_run_id_id", ["run_id", "id"], unique=False)
        batch_op.create_index("ix_workflow_run_logs_workflow_id_id", ["workflow_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workflow_run_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_run_logs_workflow_id_id")
        batch_op.drop_index("ix_workflow_run_logs_run_id_id")

    op.drop_table("workflow_run_logs")
    op.drop_table("workflow_effects")
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_runs_workflow_id_id")
        batch_op.drop_index("ix_workflow_runs_workflow_id_contact_id")
        batch_op.drop_index("ix_workflow_runs_due_at")
        batch_op.drop_index("ix_workflow_runs_contact_id_status")

    op.drop_table("workflow_runs")
    with op.batch_alter_table("workflow_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_versions_workspace_id_state_trigger_type")

    op.drop_table("workflow_versions")
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.drop_index("ix_workflows_workspace_id_id")

    op.drop_table("workflows")
