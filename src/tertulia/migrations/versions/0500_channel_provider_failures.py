"""channels: the run of provider failures since the last sign of life

A provider that cannot be reached or answers 5xx puts a channel in error only when it keeps failing
(channels/health.py): the run's first failure and how many there have been are kept on the channel.

Revision ID: 0500_channel_provider_failures
Revises: 0470_workflow_http_hosts
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0500_channel_provider_failures"
down_revision: str | None = "0470_workflow_http_hosts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.add_column(sa.Column("first_provider_failure_at", tertulia.kit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("provider_failures", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("provider_failures")
        batch.drop_column("first_provider_failure_at")
