"""assistant_llm: the workspace's OpenAI-compatible language model for the assistant (settings with
the API key encrypted) and the tokens each call spent

Revision ID: 0390_assistant_llm
Revises: 0380_data_exports
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0390_assistant_llm"
down_revision: str | None = "0380_data_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "assistant_model_settings",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("conversation_token_budget", sa.Integer(), nullable=False),
        sa.Column("monthly_token_budget", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("last_error_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("last_success_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assistant_model_settings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_model_settings")),
        sa.UniqueConstraint("workspace_id", name="uq_assistant_model_settings_workspace_id"),
    )
    op.create_table(
        "assistant_model_usage",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assistant_model_usage_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_assistant_model_usage_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_model_usage")),
    )
    with op.batch_alter_table("assistant_model_usage", schema=None) as batch_op:
        batch_op.create_index("ix_assistant_model_usage_workspace_id_month", ["workspace_id", "month"], unique=False)
        batch_op.create_index("ix_assistant_model_usage_conversation_id", ["conversation_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assistant_model_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_assistant_model_usage_conversation_id")
        batch_op.drop_index("ix_assistant_model_usage_workspace_id_month")
    op.drop_table("assistant_model_usage")
    op.drop_table("assistant_model_settings")
