"""assistant: token reservations, so a process that dies mid-call does not leak its reservation

Each reservation of the language model's budget is a row until its call settles it; a periodic
sweep gives back the tokens of reservations older than any call can last (their process died).
Reservations made before this revision are not rows: a month's counter they left reduced stays so
(it ends with the month).

Revision ID: 0580_assistant_reservations
Revises: 0560_channel_error_origin
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0580_assistant_reservations"
down_revision: str | None = "0560_channel_error_origin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "assistant_token_reservations"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_assistant_token_reservations_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assistant_token_reservations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_token_reservations")),
    )
    for column in ("workspace_id", "conversation_id", "created_at"):
        op.create_index(op.f(f"ix_{TABLE}_{column}"), TABLE, [column], unique=False)


def downgrade() -> None:
    for column in ("workspace_id", "conversation_id", "created_at"):
        op.drop_index(op.f(f"ix_{TABLE}_{column}"), table_name=TABLE)
    op.drop_table(TABLE)
