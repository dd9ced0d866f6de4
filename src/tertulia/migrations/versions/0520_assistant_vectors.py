"""assistant_vectors: the knowledge entries' embeddings kept in the database, token counters that make
the budgets' check-and-charge atomic, and a channel's bot threshold that follows the default

Revision ID: 0520_assistant_vectors
Revises: 0500_channel_provider_failures
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0520_assistant_vectors"
down_revision: str | None = "0500_channel_provider_failures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The threshold every channel was shown, and saved with its settings, before 2026-11-27: nobody
# chose it, so it follows the default now (None).
OLD_DEFAULT_THRESHOLD = 0.53
# The default when this was written, what a channel following the default had before.
DEFAULT_THRESHOLD = 0.56


def upgrade() -> None:
    op.create_table(
        "assistant_entry_embeddings",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("entry_id", ID, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["knowledge_entries.id"],
            name=op.f("fk_assistant_entry_embeddings_entry_id_knowledge_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assistant_entry_embeddings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_entry_embeddings")),
        sa.UniqueConstraint(
            "workspace_id",
            "entry_id",
            "model",
            "text_hash",
            name="uq_assistant_entry_embeddings_entry_model_text",
        ),
    )
    op.create_index(
        op.f("ix_assistant_entry_embeddings_entry_id"), "assistant_entry_embeddings", ["entry_id"], unique=False
    )
    op.create_table(
        "assistant_token_counters",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_assistant_token_counters_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assistant_token_counters_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_token_counters")),
        sa.UniqueConstraint("workspace_id", "scope", name="uq_assistant_token_counters_workspace_id_scope"),
    )
    op.create_index(
        op.f("ix_assistant_token_counters_conversation_id"), "assistant_token_counters", ["conversation_id"], unique=False
    )
    with op.batch_alter_table("assistant_channel_settings") as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.Float(), nullable=True)
    # A float read back from either database may differ from the literal in its last bits.
    op.execute(
        sa.text(
            "UPDATE assistant_channel_settings SET threshold = NULL WHERE threshold BETWEEN :low AND :high"
        ).bindparams(low=OLD_DEFAULT_THRESHOLD - 1e-6, high=OLD_DEFAULT_THRESHOLD + 1e-6)
    )


def downgrade() -> None:
    op.execute(
        sa.text("UPDATE assistant_channel_settings SET threshold = :default WHERE threshold IS NULL").bindparams(
            default=DEFAULT_THRESHOLD
        )
    )
    with op.batch_alter_table("assistant_channel_settings") as batch_op:
        batch_op.alter_column("threshold", existing_type=sa.Float(), nullable=False)
    op.drop_index(op.f("ix_assistant_token_counters_conversation_id"), table_name="assistant_token_counters")
    op.drop_table("assistant_token_counters")
    op.drop_index(op.f("ix_assistant_entry_embeddings_entry_id"), table_name="assistant_entry_embeddings")
    op.drop_table("assistant_entry_embeddings")
