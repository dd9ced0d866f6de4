"""workflow_http_hosts: the private hosts a workspace's HTTP request steps may call

Revision ID: 0470_workflow_http_hosts
Revises: 0460_assistant_embeddings
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0470_workflow_http_hosts"
down_revision: str | None = "0460_assistant_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflow_http_hosts",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_http_hosts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_http_hosts")),
        sa.UniqueConstraint("workspace_id", "host", name="uq_workflow_http_hosts_workspace_id_host"),
    )


def downgrade() -> None:
    op.drop_table("workflow_http_hosts")
