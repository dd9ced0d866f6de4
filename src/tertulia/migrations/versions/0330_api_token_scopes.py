"""api_tokens.scopes and api_tokens.expires_at: tokens limited to parts of the API and to a date

Revision ID: 0330_api_token_scopes
Revises: 0320_reports
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0330_api_token_scopes"
down_revision: str | None = "0320_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        # Existing tokens keep what they could always do.
        batch_op.add_column(
            sa.Column("scopes", tertulia.kit.models.JSONType, nullable=False, server_default=sa.text("'[\"admin\"]'"))
        )
        batch_op.add_column(sa.Column("expires_at", tertulia.kit.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("scopes")
