"""assistant_embeddings: the optional embeddings model of the assistant's OpenAI-compatible
endpoint (empty: retrieval stays lexical)

Revision ID: 0460_assistant_embeddings
Revises: 0420_report_business_hours
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0460_assistant_embeddings"
down_revision: str | None = "0420_report_business_hours"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows get "" (embeddings off): the assistant answers as before until a manager names a model.
    op.add_column(
        "assistant_model_settings",
        sa.Column("embedding_model", sa.String(length=200), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("assistant_model_settings", "embedding_model")
