"""workspaces.agents_see_unassigned: may agents see (and pick up) unassigned conversations

On by default: new chats arrive unassigned, and an agent must see them to take one. A plain
ADD COLUMN with a constant default on both databases (no table rebuild on SQLite).

Revision ID: 0090_agents_see_unassigned
Revises: 0080_notification_prefs
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0090_agents_see_unassigned"
down_revision: str | None = "0080_notification_prefs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "workspaces", sa.Column("agents_see_unassigned", sa.Boolean(), server_default=sa.true(), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("workspaces", "agents_see_unassigned")
