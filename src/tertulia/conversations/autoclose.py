"""Auto-close: open conversations with no word from the contact or a person of the team for the
workspace's `auto_close_minutes` are closed with closing source "auto-close" (the normal
conversation.closed event, system line and activity row, through `service.do_close`).

Inactivity is measured from the latest of: the contact's last message (`last_incoming_at`), the last
message written by a person (`last_agent_message_at`: sender kinds in HUMAN_SENDERS, users and API
tokens) and the conversation's (re)opening (`opened_at`). Messages of workflows, broadcasts, the
bot and the away message do not move any of them, so they never keep a conversation open.

The periodic task (`conversations.auto_close`, every minute) may run on several workers at once:
each batch locks its rows with FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite has one writer), and the
rows are re-read under the lock with the same conditions, so a conversation is closed once, and one
that got a message meanwhile is left open.
"""

from datetime import datetime, timedelta

import structlog
from huey import crontab
from sqlalchemy import or_, select

from tertulia.conversations.models import ClosingSource, Conversation, ConversationStatus
from tertulia.conversations.service import do_close
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.queue import huey, task_database
from tertulia.users.permissions import Actor
from tertulia.workspaces.models import Workspace

log = structlog.get_logger("tertulia.conversations.autoclose")

BATCH = 200


def close_inactive(database: Database, *, batch: int = BATCH) -> int:
    """One pass over every workspace with auto-close on; returns how many conversations it closed."""
    with database.transaction(write=False) as session:
        settings = session.execute(
            select(Workspace.id, Workspace.auto_close_minutes).where(Workspace.auto_close_minutes.is_not(None))
        ).all()
    closed = 0
    for workspace_id, minutes in settings:
        while True:
            done = _close_batch(database, workspace_id, utcnow() - timedelta(minutes=minutes or 0), batch)
            closed += done
            if done < batch:
                break
    return closed


def _close_batch(database: Database, workspace_id: int, cutoff: datetime, batch: int) -> int:
    with database.transaction() as session:
        query = (
            select(Conversation)
            .where(
                Conversation.workspace_id == workspace_id,
                Conversation.status == ConversationStatus.OPEN,
                Conversation.opened_at <= cutoff,
                or_(Conversation.last_incoming_at.is_(None), Conversation.last_incoming_at <= cutoff),
                or_(Conversation.last_agent_message_at.is_(None), Conversation.last_agent_message_at <= cutoff),
            )
            .order_by(Conversation.id)
            .limit(batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        conversations = session.scalars(query).all()
        actor = Actor.system(workspace_id)
        for conversation in conversations:
            do_close(session, actor, conversation, category_id=None, summary=None, source=ClosingSource.AUTO_CLOSE)
        if conversations:
            log.info("auto_closed", workspace_id=workspace_id, conversations=len(conversations))
        return len(conversations)


@huey.periodic_task(crontab(minute="*"), name="conversations.auto_close")  # type: ignore[untyped-decorator]
def auto_close_task() -> int:
    return close_inactive(task_database())
