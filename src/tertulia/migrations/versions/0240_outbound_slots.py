"""outbound_pace: the latest slots given under a channel's pace, so paced messages reserve their turn

A message that cannot go yet under its channel's pace is given the next free slot and queued for
that moment, instead of every waiting message being retried at once and re-locking the pace row
(which kept a busy number at a quarter of its rate).

Revision ID: 0240_outbound_slots
Revises: 0230_sms_consent
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0240_outbound_slots"
down_revision: str | None = "0230_sms_consent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_pace") as batch:
        batch.add_column(sa.Column("scheduled", tertulia.kit.models.JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_pace") as batch:
        batch.drop_column("scheduled")
