"""report_tag_filter: the drill-down items keep the rollup label (who closed, who assigned), so a
report filtered on a contact tag, which reads the items instead of the rollups, splits closings and
assignments as the rollups do. Items written before this revision have an empty label; resolution,
assignment and reply times, assignments, unassignments and replies have items from this revision on.

Revision ID: 0550_report_tag_filter
Revises: 0540_email_watchers
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0550_report_tag_filter"
down_revision: str | None = "0540_email_watchers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("report_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("report_items", schema=None) as batch_op:
        batch_op.drop_column("label")
