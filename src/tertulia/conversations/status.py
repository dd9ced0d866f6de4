"""Delivery statuses of outgoing messages: they only move forward (channels.protocol.STATUS_PREDECESSORS),
so late, repeated or out-of-order receipts change nothing. Shared by the outbox and provider callbacks."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, StatusUpdate, status_advances
from tertulia.conversations import events
from tertulia.conversations import repository as repo
from tertulia.conversations.events import InboxEvent
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.kit.clock import utcnow


def do_apply_statuses(session: Session, updates: Sequence[tuple[Channel, StatusUpdate]]) -> int:
    """Providers' status callbacks, in arrival order; how many moved a message forward.

    One query finds every message they name and one their conversations, whatever their number; a
    status that cannot move its message forward (late, repeated, backwards, or for a message that
    is not ours) costs nothing more, and one that can is one conditional UPDATE, so a racing writer
    still cannot move a message backwards."""
    keys = [(channel.id, update.provider_message_id) for channel, update in updates]
    messages = {
        (message.channel_id, message.provider_message_id): message
        for message in repo.messages_by_provider_ids(session, keys)
        if message.direction == Direction.OUTGOING
    }
    now = utcnow()
    moved: list[tuple[Message, DeliveryStatus, str | None]] = []
    for channel, update in updates:
        message = messages.get((channel.id, update.provider_message_id))
        if message is None or not status_advances(message.status, update.status):
            continue
        if repo.advance_status(session, message.id, update.status, update.reason, now):
            # What the UPDATE wrote, without making the session write it again.
            set_committed_value(message, "status", update.status)
            set_committed_value(message, "status_at", now)
            if update.status == DeliveryStatus.FAILED:
                set_committed_value(message, "status_reason", update.reason)
            moved.append((message, update.status, message.status_reason))
    if moved:
        ids = {message.conversation_id for message, _, _ in moved}
        conversations = {c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(ids)))}
        for message, status, reason in moved:
            _emit_status(session, conversations[message.conversation_id], message.id, status, reason)
    return len(moved)


def _emit_status(
    session: Session, conversation: Conversation, message_id: int, status: DeliveryStatus, reason: str | None
) -> None:
    payload = {"message_id": message_id, "status": status.value, "reason": reason}
    events.emit(session, events.make_event(InboxEvent.MESSAGE_STATUS, conversation, payload, visitor=False))


def advance_message_status(session: Session, message: Message, status: DeliveryStatus, reason: str | None) -> bool:
    changed = repo.advance_status(session, message.id, status, reason, utcnow())
    if changed:
        session.refresh(message)
        conversation = session.get(Conversation, message.conversation_id)
        assert conversation is not None
        _emit_status(session, conversation, message.id, status, message.status_reason)
    return changed
