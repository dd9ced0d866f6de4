"""webhook_open_deliveries: partial indexes on the deliveries still to send (pending or sending), so
the claim and its "an earlier delivery of this contact is open" check no longer walk the delivered
ones; the full index the check used is replaced by its partial twin

Revision ID: 0400_webhook_open_deliveries
Revises: 0390_assistant_llm
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0400_webhook_open_deliveries"
down_revision: str | None = "0390_assistant_llm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "state IN ('pending', 'sending')"


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_open_id",
        "webhook_deliveries",
        ["id"],
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_index(
        "ix_webhook_deliveries_open_endpoint_id_ordering_key_id",
        "webhook_deliveries",
        ["endpoint_id", "ordering_key", "id"],
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.drop_index("ix_webhook_deliveries_endpoint_id_ordering_key_id", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_ordering_key_id",
        "webhook_deliveries",
        ["endpoint_id", "ordering_key", "id"],
    )
    op.drop_index("ix_webhook_deliveries_open_endpoint_id_ordering_key_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_open_id", table_name="webhook_deliveries")
