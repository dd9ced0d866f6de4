"""report_business_hours: each conversation's first response and resolution times within business
hours, beside the calendar ones. The rollups need no new column: the business-hours values are
metrics of their own (first_response_bh, resolution_bh, assignment_bh) in report_rollups, written
from this revision on (durations applied before have no business-hours value)

Revision ID: 0420_report_business_hours
Revises: 0400_webhook_open_deliveries
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0420_report_business_hours"
down_revision: str | None = "0400_webhook_open_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("report_conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_response_business_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("resolution_business_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_conversations", schema=None) as batch_op:
        batch_op.drop_column("resolution_business_seconds")
        batch_op.drop_column("first_response_business_seconds")
