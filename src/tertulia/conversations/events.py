"""What the inbox emits. Every event is queued on commit and published to the realtime hub;
other domains (workflows, reports, webhooks) subscribe with `on_event`.

Event shape (JSON):
    {"type": "message.created" | "message.status" | "conversation.opened" | "conversation.assigned"
             | "conversation.closed" | "conversation.reopened" | "conversation.bot" | "conversation.read"
             | "mention.created" | "typing",
     "workspace_id", "conversation_id", "contact_id",
     "assignee_id", "team_id",                     # after the change: who may see it
     "previous_assignee_id", "previous_team_id",   # before it: so the old owner learns it moved away
     "mentioned_user_ids",                         # mention.created only
     "visitor": bool,                              # may go to the customer's web-chat socket
     "sender_external_id",                         # message.created of incoming messages: lets a
                                                   # visitor's socket learn its contact id for free
     "topics": [...],                              # realtime routing: visitor events go to
                                                   # "contact:<id>" (and "visitor:<external id>")
     "data": {...}}
"""

from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tertulia.conversations.models import Conversation
from tertulia.kit import realtime
from tertulia.kit.db import on_commit

log = structlog.get_logger()

Event = dict[str, Any]
Listener = Callable[[Event], None]
LISTENERS: list[Listener] = []


def on_event(listener: Listener) -> Listener:
    LISTENERS.append(listener)
    return listener


def make_event(
    event_type: str,
    conversation: Conversation,
    data: dict[str, Any],
    *,
    previous_assignee_id: int | None = None,
    previous_team_id: int | None = None,
    visitor: bool = False,
    mentioned_user_ids: list[int] | None = None,
    sender_external_id: str | None = None,
) -> Event:
    return {
        "sender_external_id": sender_external_id,
        "type": event_type,
        "workspace_id": conversation.workspace_id,
        "conversation_id": conversation.id,
        "contact_id": conversation.contact_id,
        "assignee_id": conversation.assignee_id,
        "team_id": conversation.team_id,
        "previous_assignee_id": previous_assignee_id,
        "previous_team_id": previous_team_id,
        "mentioned_user_ids": mentioned_user_ids or [],
        "visitor": visitor,
        "topics": visitor_topics(conversation.contact_id, sender_external_id) if visitor else [],
        "data": data,
    }


def visitor_topics(contact_id: int, sender_external_id: str | None) -> list[str]:
    return [f"contact:{contact_id}"] + ([f"visitor:{sender_external_id}"] if sender_external_id else [])


def dispatch(event: Event) -> None:
    realtime.publish(event)
    for listener in LISTENERS:
        try:
            listener(event)
        except Exception as exc:  # one broken listener must not stop the others
            log.exception("event_listener_failed", event_type=event["type"], error=str(exc))


def emit(session: Session, event: Event) -> None:
    on_commit(session, lambda: dispatch(event))
