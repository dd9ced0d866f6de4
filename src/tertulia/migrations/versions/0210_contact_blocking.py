"""contacts: blocking; contact identities: a token generation per web-chat visitor

A blocked contact's messages are not put into the inbox: each one is counted on the contact
(`blocked_messages`, `last_blocked_at`) and recorded in the event log (`message.blocked`). A web-chat
visitor's tokens carry their identity's `token_generation`; raising it (blocking the contact, or
ending its web-chat sessions) makes every token issued before unusable at once.

Revision ID: 0210_contact_blocking
Revises: 0200_merge_suggestions
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0210_contact_blocking"
down_revision: str | None = "0200_merge_suggestions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch (SQLite would copy the table, and contact_tags' triggers name it).
    op.add_column("contacts", sa.Column("blocked", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("contacts", sa.Column("blocked_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column("contacts", sa.Column("blocked_messages", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column(
        "contacts", sa.Column("last_blocked_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_contacts_workspace_id_blocked", "contacts", ["workspace_id", "blocked"])
    op.add_column(
        "contact_identities", sa.Column("token_generation", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("contact_identities", "token_generation")
    op.drop_index("ix_contacts_workspace_id_blocked", table_name="contacts")
    for column in ("last_blocked_at", "blocked_messages", "blocked_at", "blocked"):
        op.drop_column("contacts", column)
