"""conversations: SMS consent per SMS channel and number, and the parts of long SMS

STOP (and the other opt-out keywords) texted to an SMS channel, or a provider's word that the number
opted out, records an opt-out for that number on that channel, with the message as evidence; the
outbox refuses to send there until START (or another opt-in keyword) lifts it. A long SMS that
arrives in parts (Vonage's SMS API) keeps its parts until every one is in.

Revision ID: 0230_sms_consent
Revises: 0210_contact_blocking
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0230_sms_consent"
down_revision: str | None = "0210_contact_blocking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sms_parts",
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("assembled", sa.Boolean(), nullable=False),
        sa.Column("received_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_sms_parts_channel_id_channels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_sms_parts_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_parts")),
        sa.UniqueConstraint(
            "channel_id", "sender", "ref", "part", name=op.f("uq_sms_parts_channel_id_sender_ref_part")
        ),
    )
    with op.batch_alter_table("sms_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_parts_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "sms_consent",
        sa.Column("workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=False),
        sa.Column("evidence_message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("changed_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_sms_consent_channel_id_channels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["evidence_message_id"],
            ["messages.id"],
            name=op.f("fk_sms_consent_evidence_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_sms_consent_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_consent")),
        sa.UniqueConstraint("channel_id", "recipient", name=op.f("uq_sms_consent_channel_id_recipient")),
    )
    with op.batch_alter_table("sms_consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_consent_workspace_id"), ["workspace_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_consent_workspace_id"))

    op.drop_table("sms_consent")
    with op.batch_alter_table("sms_parts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_parts_workspace_id"))

    op.drop_table("sms_parts")
