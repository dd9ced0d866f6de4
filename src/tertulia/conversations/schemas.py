"""The inbox's output shapes: one serialiser per row type, shared by the API, events and sockets.

`message_dict` is the one shape of a message (the API, the agents' socket, events); the visitor's
widget sees `visitor_message`, a projection of it without what is only the team's business
(sender, status, payload).
"""

from typing import Any

from tertulia.conversations.models import Conversation, Message
from tertulia.events.types import ConversationSnapshot

VISITOR_MESSAGE_FIELDS = ("id", "direction", "type", "text", "attachments", "created_at")


def message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "contact_id": message.contact_id,
        "channel_id": message.channel_id,
        "direction": message.direction.value,
        "sender_kind": message.sender_kind.value,
        "sender_user_id": message.sender_user_id,
        "type": message.type.value,
        "text": message.text,
        "attachments": message.attachments or [],
        "payload": message.payload or {},
        "status": message.status.value if message.status else None,
        "status_reason": message.status_reason,
        "created_at": message.created_at.isoformat(),
    }


def conversation_dict(conversation: Conversation) -> ConversationSnapshot:
    """The one shape of a conversation (the API, events, webhooks, sockets): typed as the event
    catalogue's `ConversationSnapshot`, so a field added to one and not the other fails the type check."""
    return {
        "id": conversation.id,
        "contact_id": conversation.contact_id,
        "channel_id": conversation.channel_id,
        "status": conversation.status.value,
        "assignee_id": conversation.assignee_id,
        "team_id": conversation.team_id,
        "bot_paused": conversation.bot_paused,
        "closing_category_id": conversation.closing_category_id,
        "closing_summary": conversation.closing_summary,
        "closing_source": conversation.closing_source.value if conversation.closing_source else None,
        "opening_source": conversation.opening_source.value if conversation.opening_source else None,
        "opened_at": conversation.opened_at.isoformat(),
        "closed_at": conversation.closed_at.isoformat() if conversation.closed_at else None,
        "last_message_at": conversation.last_message_at.isoformat(),
        "last_incoming_at": conversation.last_incoming_at.isoformat() if conversation.last_incoming_at else None,
        "last_message_preview": conversation.last_message_preview,
    }


def visitor_message(message: dict[str, Any]) -> dict[str, Any]:
    """What the visitor's widget is shown of a message (`message` is a `message_dict`)."""
    return {key: message[key] for key in VISITOR_MESSAGE_FIELDS}
