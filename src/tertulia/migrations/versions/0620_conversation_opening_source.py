"""conversation_opening_source: who opened (or reopened) each conversation

`conversations.opening_source` holds the "conversation opened" trigger's source (contact,
broadcast_reply, user, api, workflow, system), set by the inbox whenever a conversation is opened
or reopened, so a workflow's branch may test it. Existing conversations get it from the event log:
the latest conversation.opened or conversation.reopened event of each, its source read from the
event's actor label as the trigger reads it, and "broadcast_reply" where a contact's opening message
is a broadcast reply recorded by the broadcasts module. A conversation whose events are no longer in
the log stays NULL (no branch condition's value matches it, as for an empty field).

Revision ID: 0620_conversation_opening_source
Revises: 0610_report_indexes
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0620_conversation_opening_source"
down_revision: str | None = "0610_report_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("contact", "broadcast_reply", "user", "api", "workflow", "system")

# Each conversation's latest opening event, its source read from the actor label's kind (the part
# before ":"), as the trigger reads it. One pass over the events (they have no index on the
# conversation: a correlated lookup per conversation would read them all for each); UPDATE ... FROM
# is in SQLite from 3.33 and in PostgreSQL.
FROM_LATEST_OPENING = """
    UPDATE conversations SET opening_source = latest.source
    FROM (
      SELECT e.conversation_id,
             CASE
               WHEN e.actor IN ('channel', 'contact') OR e.actor LIKE 'contact:%' THEN 'contact'
               WHEN e.actor = 'user' OR e.actor LIKE 'user:%' THEN 'user'
               WHEN e.actor = 'api' OR e.actor LIKE 'api:%' THEN 'api'
               WHEN e.actor = 'workflow' OR e.actor LIKE 'workflow:%' THEN 'workflow'
               ELSE 'system'
             END AS source
      FROM events e
      JOIN (
        SELECT conversation_id, max(id) AS id FROM events
        WHERE type IN ('conversation.opened', 'conversation.reopened') AND conversation_id IS NOT NULL
        GROUP BY conversation_id
      ) newest ON newest.id = e.id
    ) latest
    WHERE latest.conversation_id = conversations.id
"""

# A contact-opened conversation whose first message is a broadcast recipient's recorded reply.
OPENED_BY_REPLY = """
    UPDATE conversations SET opening_source = 'broadcast_reply'
    WHERE opening_source = 'contact' AND EXISTS (
      SELECT 1 FROM broadcast_recipients r JOIN messages m ON m.id = r.reply_message_id
      WHERE m.conversation_id = conversations.id
        AND NOT EXISTS (SELECT 1 FROM messages earlier WHERE earlier.conversation_id = m.conversation_id
                        AND earlier.id < m.id)
    )
"""


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no foreign key) on both databases: no table rebuild on SQLite.
    op.add_column(
        "conversations",
        sa.Column("opening_source", sa.Enum(*SOURCES, name="opening_source", native_enum=False, length=16)),
    )
    op.execute(sa.text(FROM_LATEST_OPENING))
    op.execute(sa.text(OPENED_BY_REPLY))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("opening_source")
