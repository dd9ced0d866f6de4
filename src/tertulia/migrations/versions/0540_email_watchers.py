"""email_watchers: the processes watching email channels' mailboxes (heartbeats), and who watches
each mailbox and how (email_watches)

Revision ID: 0540_email_watchers
Revises: 0530_report_reply_times
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0540_email_watchers"
down_revision: str | None = "0530_report_reply_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "email_watchers",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("started_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", tertulia.kit.models.UTCDateTime(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_watchers")),
    )
    with op.batch_alter_table("email_watchers") as batch:
        batch.create_index(batch.f("ix_email_watchers_heartbeat_at"), ["heartbeat_at"], unique=False)
    op.create_table(
        "email_watches",
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("watcher_id", ID, nullable=True),
        sa.Column("watched_since", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=True),
        sa.Column("checked_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("mail_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_at", tertulia.kit.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_email_watches_channel_id_channels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["watcher_id"],
            ["email_watchers.id"],
            name=op.f("fk_email_watches_watcher_id_email_watchers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_email_watches")),
    )
    with op.batch_alter_table("email_watches") as batch:
        batch.create_index(batch.f("ix_email_watches_watcher_id"), ["watcher_id"], unique=False)


def downgrade() -> None:
    op.drop_table("email_watches")
    op.drop_table("email_watchers")
