"""knowledge_entries, knowledge_synonyms, knowledge_versions, assistant_channel_settings: the
assistant's knowledge matrix and its per-channel settings

Revision ID: 0310_knowledge
Revises: 0300_workflows
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0310_knowledge"
down_revision: str | None = "0300_workflows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tertulia.kit.models.UTCDateTime(), nullable=nullable)


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=op.f(f"fk_{table}_workspace_id_workspaces"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "knowledge_entries",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("question", sa.String(500), nullable=False),
        sa.Column("question_key", sa.String(500), nullable=False),
        sa.Column("alternatives", tertulia.kit.models.JSONType, nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("buttons", tertulia.kit.models.JSONType, nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("search_key", sa.Text(), nullable=False),
        _time("created_at", False),
        _time("updated_at", False),
        _workspace_fk("knowledge_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_entries")),
        sa.UniqueConstraint(
            "workspace_id",
            "language",
            "question_key",
            name=op.f("uq_knowledge_entries_workspace_id_language_question_key"),
        ),
    )
    op.create_index("ix_knowledge_entries_workspace_id_id", "knowledge_entries", ["workspace_id", "id"])
    op.create_table(
        "knowledge_synonyms",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("terms", tertulia.kit.models.JSONType, nullable=False),
        _workspace_fk("knowledge_synonyms"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_synonyms")),
    )
    op.create_index("ix_knowledge_synonyms_workspace_id", "knowledge_synonyms", ["workspace_id"])
    op.create_table(
        "knowledge_versions",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        _workspace_fk("knowledge_versions"),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_knowledge_versions")),
    )
    op.create_table(
        "assistant_channel_settings",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("handoff_keywords", tertulia.kit.models.JSONType, nullable=False),
        sa.Column("handoff_message", sa.Text(), nullable=False),
        sa.Column("max_bot_answers", sa.Integer(), nullable=False),
        _time("created_at", False),
        _time("updated_at", False),
        _workspace_fk("assistant_channel_settings"),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_assistant_channel_settings_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_channel_settings")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_assistant_channel_settings_channel_id")),
    )
    op.create_index(
        "ix_assistant_channel_settings_workspace_id", "assistant_channel_settings", ["workspace_id"]
    )


def downgrade() -> None:
    op.drop_table("assistant_channel_settings")
    op.drop_table("knowledge_versions")
    op.drop_table("knowledge_synonyms")
    op.drop_table("knowledge_entries")
