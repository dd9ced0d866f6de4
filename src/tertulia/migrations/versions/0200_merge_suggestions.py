"""contacts: merge suggestions; messages: an index to count a channel's messages per day

A message from a new channel identity whose phone, email or name matches another contact, when
linking it is not certain, records a merge suggestion shown on both contacts (accept or dismiss).
Settings > Channels counts each channel's messages in and out today through the new index.

Revision ID: 0200_merge_suggestions
Revises: 0150_channel_health
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0200_merge_suggestions"
down_revision: str | None = "0150_channel_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "contact_merge_suggestions",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("other_contact_id", ID, nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_user_id", ID, nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.CheckConstraint(
            "contact_id < other_contact_id", name=op.f("ck_contact_merge_suggestions_pair_ordered")
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_merge_suggestions_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["other_contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_merge_suggestions_other_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_user_id"],
            ["users.id"],
            name=op.f("fk_contact_merge_suggestions_decided_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_merge_suggestions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_merge_suggestions")),
        sa.UniqueConstraint(
            "workspace_id",
            "contact_id",
            "other_contact_id",
            name=op.f("uq_contact_merge_suggestions_workspace_id_contact_id_other_contact_id"),
        ),
    )
    with op.batch_alter_table("contact_merge_suggestions") as batch:
        batch.create_index("ix_contact_merge_suggestions_other_contact_id", ["other_contact_id"], unique=False)
    with op.batch_alter_table("messages") as batch:
        batch.create_index(
            "ix_messages_channel_id_direction_created_at", ["channel_id", "direction", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_channel_id_direction_created_at")
    op.drop_table("contact_merge_suggestions")
