"""report_indexes: indexes for the distinct counts and for the reports filtered on a tag

report_items' index on (workspace_id, metric, period) gains conversation_id: a report filtered on a
contact tag reads a range of items and keeps those of the tagged contacts' conversations; with the
conversation in the index entry SQLite tests it there and reads the row of the kept items only
(about a tenth in the benchmark), not of every item in the range. PostgreSQL reads the same index.

report_rollups gets a partial index of the labelled metrics (closed_contact, replied_conversation)
with their count: the distinct counts group those rows by label and sum their counts, and read
them from the index alone instead of one table page per row (the queries repeat the index's
condition, which SQLite needs to use a partial index).

Revision ID: 0610_report_indexes
Revises: 0600_tag_count_precounted
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0610_report_indexes"
down_revision: str | None = "0600_tag_count_precounted"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LABELLED_WHERE = "metric IN ('closed_contact', 'replied_conversation')"
LABELLED_KEY = [
    "workspace_id",
    "grain",
    "metric",
    "period",
    "label",
    "channel_id",
    "team_id",
    "user_id",
    "category_id",
    "source",
]


def upgrade() -> None:
    with op.batch_alter_table("report_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_items_workspace_id_metric_period_conversation_id",
            ["workspace_id", "metric", "period", "conversation_id"],
            unique=False,
        )
        batch_op.drop_index("ix_report_items_workspace_id_metric_period")
    op.create_index(
        "ix_report_rollups_labelled_counts",
        "report_rollups",
        [*LABELLED_KEY, "count"],
        unique=False,
        sqlite_where=sa.text(LABELLED_WHERE),
        postgresql_where=sa.text(LABELLED_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_report_rollups_labelled_counts", table_name="report_rollups")
    with op.batch_alter_table("report_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_items_workspace_id_metric_period", ["workspace_id", "metric", "period"], unique=False
        )
        batch_op.drop_index("ix_report_items_workspace_id_metric_period_conversation_id")
