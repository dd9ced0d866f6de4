"""users.notify_desktop and users.notify_sound: per-person inbox alerts

Both default to on, which is how the inbox behaved before the preference existed. Plain ADD COLUMN
on both databases (SQLite adds a NOT NULL column with a constant default without rebuilding the
table, so the many tables that reference users are not touched).

Revision ID: 0080_notification_prefs
Revises: 0070_tag_count
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0080_notification_prefs"
down_revision: str | None = "0070_tag_count"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("notify_desktop", "notify_sound")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("users", sa.Column(name, sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place (no table rebuild).
    for name in COLUMNS:
        op.drop_column("users", name)
