"""Delivery statuses of outgoing messages: they only move forward (channels.protocol.STATUS_PREDECESSORS),
so late, repeated or out-of-order receipts change nothing. Shared by the outbox and provider callbacks."""

from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.conversations import events
from tertulia.conversations import repository as repo
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.kit.clock import utcnow


def do_apply_status(
    session: Session, channel: Channel, provider_message_id: str, status: DeliveryStatus, reason: str | None = None
) -> bool:
    """A provider's status callback; monotonic, so late or repeated callbacks change nothing."""
    message = repo.message_by_provider_id(session, channel.id, provider_message_id)
    if message is None or message.direction != Direction.OUTGOING:
        return False
    return advance_message_status(session, message, status, reason)


def advance_message_status(session: Session, message: Message, status: DeliveryStatus, reason: str | None) -> bool:
    changed = repo.advance_status(session, message.id, status, reason, utcnow())
    if changed:
        session.refresh(message)
        conversation = session.get(Conversation, message.conversation_id)
        assert conversation is not None
        events.emit(
            session,
            events.make_event(
                "message.status",
                conversation,
                {"message_id": message.id, "status": status.value, "reason": message.status_reason},
                visitor=False,
            ),
        )
    return changed
