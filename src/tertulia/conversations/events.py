"""What the inbox emits. Every event is queued on commit and published to the realtime hub (the
browsers' fast path); other domains (workflows, reports, webhooks) consume the durable event log
instead (`tertulia.events`), which `emit` writes in the same transaction.

Event shape (JSON):
    {"type": an InboxEvent value ("message.created", "conversation.assigned", ...),
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

`emit` also records the durable, typed event (`tertulia.events`) in the same transaction, mapped
from the realtime type: message.created becomes message.received (incoming), message.sent (outgoing)
or comment.added (a note), system lines none (their change has its own event); message.status
becomes message.status_changed; conversation.assigned to nobody becomes conversation.unassigned.
typing, message.updated, conversation.bot and mention.created are realtime only.
"""

from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from tertulia.conversations.models import Conversation
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit import realtime
from tertulia.kit.db import on_commit
from tertulia.users.permissions import Actor

Event = dict[str, Any]


class InboxEvent(StrEnum):
    """The realtime event types the inbox publishes (the `type` of an event)."""

    MESSAGE_CREATED = "message.created"
    MESSAGE_UPDATED = "message.updated"  # a customer edited a message
    MESSAGE_STATUS = "message.status"
    CONVERSATION_OPENED = "conversation.opened"
    CONVERSATION_ASSIGNED = "conversation.assigned"
    CONVERSATION_CLOSED = "conversation.closed"
    CONVERSATION_REOPENED = "conversation.reopened"
    CONVERSATION_BOT = "conversation.bot"
    MENTION_CREATED = "mention.created"
    TYPING = "typing"


def make_event(
    event_type: InboxEvent,
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
        "type": event_type.value,
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


def emit(session: Session, event: Event, *, actor: Actor | None = None) -> None:
    """Publish `event` to the sockets after commit, and record its durable twin in the transaction.
    `actor` labels the durable event; without it, message events are labelled from their sender."""
    on_commit(session, lambda: dispatch(event))
    durable = durable_event(event, actor)
    if durable is not None:
        event_log.emit(session, durable)


_CONVERSATION_TYPES = {
    InboxEvent.CONVERSATION_OPENED: EventType.CONVERSATION_OPENED,
    InboxEvent.CONVERSATION_ASSIGNED: EventType.CONVERSATION_ASSIGNED,
    InboxEvent.CONVERSATION_CLOSED: EventType.CONVERSATION_CLOSED,
    InboxEvent.CONVERSATION_REOPENED: EventType.CONVERSATION_REOPENED,
}
_MESSAGE_TYPES = {
    "incoming": EventType.MESSAGE_RECEIVED,
    "outgoing": EventType.MESSAGE_SENT,
    "comment": EventType.COMMENT_ADDED,
}


def durable_event(event: Event, actor: Actor | None = None) -> event_log.Event | None:
    """The event log's record of a realtime event; None for realtime-only ones."""
    realtime_type = event["type"]
    data: dict[str, Any] = event["data"]
    label = event_log.actor_label(actor.kind, actor.user_id, actor.token_id) if actor is not None else None
    payload: dict[str, Any]
    if realtime_type == InboxEvent.MESSAGE_CREATED:
        message = data["message"]
        kind = _MESSAGE_TYPES.get(message["direction"])
        if kind is None:
            return None
        payload = {"message": message}
        if label is None:
            label = event_log.actor_label(message["sender_kind"], message["sender_user_id"])
    elif realtime_type == InboxEvent.MESSAGE_STATUS:
        kind = EventType.MESSAGE_STATUS_CHANGED
        payload = {"message_id": data["message_id"], "status": data["status"], "reason": data["reason"]}
    elif realtime_type in _CONVERSATION_TYPES:
        kind = _CONVERSATION_TYPES[realtime_type]
        conversation = data["conversation"]
        payload = {"conversation": conversation}
        if kind == EventType.CONVERSATION_ASSIGNED:
            if conversation["assignee_id"] is None and conversation["team_id"] is None:
                kind = EventType.CONVERSATION_UNASSIGNED
            payload["previous_assignee_id"] = event["previous_assignee_id"]
            payload["previous_team_id"] = event["previous_team_id"]
    else:
        return None
    return event_log.Event(
        type=kind,
        workspace_id=event["workspace_id"],
        conversation_id=event["conversation_id"],
        contact_id=event["contact_id"],
        actor=label,
        payload=payload,
    )
