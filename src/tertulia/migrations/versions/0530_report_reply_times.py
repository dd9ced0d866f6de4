"""report_reply_times: the clocks of each conversation's reply time (the customer's earliest message
not answered yet by a person) and of its first and latest assignment until a person replies. The
rollups need no new column: the times are metrics of their own (reply_time, first_assign_response,
last_assign_response and their _bh twins), written from this revision on

Revision ID: 0530_report_reply_times
Revises: 0520_assistant_vectors
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tertulia.kit.models

revision: str = "0530_report_reply_times"
down_revision: str | None = "0520_assistant_vectors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLOCKS = ("reply_waiting_since", "first_assignment_waiting_since", "last_assignment_waiting_since")


def upgrade() -> None:
    with op.batch_alter_table("report_conversations", schema=None) as batch_op:
        for name in CLOCKS:
            batch_op.add_column(sa.Column(name, tertulia.kit.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_conversations", schema=None) as batch_op:
        for name in reversed(CLOCKS):
            batch_op.drop_column(name)
