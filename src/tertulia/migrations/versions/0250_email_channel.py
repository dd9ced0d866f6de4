"""email channel: where each mailbox's fetcher stands (email_mailboxes), and a signature per person

Revision ID: 0250_email_channel
Revises: 0240_outbound_slots
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0250_email_channel"
down_revision: str | None = "0240_outbound_slots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "email_mailboxes",
        sa.Column("channel_id", BigID, nullable=False),
        sa.Column("workspace_id", BigID, nullable=False),
        sa.Column("folder", sa.String(length=200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("pop_uidls", tertulia.kit.models.JSONType, nullable=False),
        sa.Column("fetched_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("due_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_email_mailboxes_channel_id_channels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_mailboxes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_email_mailboxes")),
    )
    with op.batch_alter_table("email_mailboxes") as batch:
        batch.create_index(batch.f("ix_email_mailboxes_due_at"), ["due_at"], unique=False)
        batch.create_index(batch.f("ix_email_mailboxes_workspace_id"), ["workspace_id"], unique=False)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_signature", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_signature")
    op.drop_table("email_mailboxes")
