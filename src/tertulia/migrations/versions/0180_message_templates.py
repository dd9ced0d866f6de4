"""channels: WhatsApp message templates, and the number's quality and messaging limit

`message_templates` keeps each channel's provider templates (name, language, category, status,
components, parameter format, quality) as the last sync or webhook left them; `channels` gains the
number's latest quality event and messaging limit, and when its templates were last synced.

Revision ID: 0180_message_templates
Revises: 0170_outbound_pace
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0180_message_templates"
down_revision: str | None = "0170_outbound_pace"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("quality_event", sa.String(40), nullable=True))
        batch.add_column(sa.Column("messaging_limit", sa.String(40), nullable=True))
        batch.add_column(sa.Column("quality_changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("templates_synced_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("templates_sync_error", sa.Text(), nullable=True))
    op.create_table(
        "message_templates",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("provider_template_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("language", sa.String(15), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("parameter_format", sa.String(16), nullable=False),
        sa.Column("components", JSON, nullable=False),
        sa.Column("quality", sa.String(16), nullable=True),
        sa.Column("previous_category", sa.String(32), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_message_templates_workspace_id_workspaces", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name="fk_message_templates_channel_id_channels", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_message_templates"),
        sa.UniqueConstraint("channel_id", "name", "language", name="uq_message_templates_channel_id_name_language"),
    )
    op.create_index("ix_message_templates_workspace_id", "message_templates", ["workspace_id"])


def downgrade() -> None:
    op.drop_index("ix_message_templates_workspace_id", table_name="message_templates")
    op.drop_table("message_templates")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("templates_sync_error")
        batch.drop_column("templates_synced_at")
        batch.drop_column("quality_changed_at")
        batch.drop_column("messaging_limit")
        batch.drop_column("quality_event")
