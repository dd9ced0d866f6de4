"""Conversations whose customer has waited WAITING_MINUTES without a reply: their assignee is told
once per wait (`waiting`), by the periodic `notifications.notify_waiting`.

A conversation waits while it is open, assigned, and its last message is the customer's
(`last_incoming_at == last_message_at`: notes do not move `last_message_at`, replies do). The key
"waiting:<conversation>:<the customer's last message time>" makes each wait notify once, whichever
worker runs the task and however often.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation, ConversationStatus
from tertulia.kit.db import Database, on_commit
from tertulia.notifications.models import NotificationKind
from tertulia.notifications.service import Draft, do_notify, wants_email

WAITING_MINUTES = 15
# Waits older than this were told about already (or the task was down for a day): not looked at.
LOOK_BACK = timedelta(days=1)
BATCH = 500


def notify_waiting(db: Database, now: datetime, queue_emails: Callable[[], None]) -> int:
    """Tell assignees of conversations that started waiting WAITING_MINUTES ago; how many were told.
    The caller queues the email task when `wants_email` (tasks.py)."""
    since = now - timedelta(minutes=WAITING_MINUTES)
    told = 0
    emails_due = False
    with db.transaction() as session:
        rows = session.execute(
            select(Conversation, Contact)
            .join(Contact, Contact.id == Conversation.contact_id)
            .where(
                Conversation.status == ConversationStatus.OPEN,
                Conversation.assignee_id.is_not(None),
                Conversation.last_incoming_at.is_not(None),
                Conversation.last_incoming_at == Conversation.last_message_at,
                Conversation.last_incoming_at <= since,
                Conversation.last_incoming_at > since - LOOK_BACK,
            )
            .order_by(Conversation.id)
            .limit(BATCH)
        ).all()
        for conversation, contact in rows:
            if conversation.assignee_id is None or conversation.last_incoming_at is None:
                continue  # the query excludes both; this tells the type checker
            waited = int((now - conversation.last_incoming_at).total_seconds() // 60)
            draft = Draft(
                conversation.assignee_id,
                NotificationKind.WAITING,
                {"contact": contact.full_name or f"#{contact.id}", "minutes": waited},
                f"/messages/{conversation.id}",
                conversation.id,
                key=f"waiting:{conversation.id}:{conversation.last_incoming_at.isoformat()}",
            )
            written = do_notify(session, conversation.workspace_id, None, [draft])
            told += len(written)
            emails_due = emails_due or wants_email(written)
        if emails_due:
            on_commit(session, queue_emails)
    return told
