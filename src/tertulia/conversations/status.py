"""Delivery statuses of outgoing messages: they only move forward (channels.protocol.STATUS_PREDECESSORS),
so late, repeated or out-of-order receipts change nothing. Shared by the outbox and provider callbacks."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tertulia.channels.models import Channel
from tertulia.channels.protocol import STATUS_PREDECESSORS, DeliveryStatus, StatusUpdate, status_advances
from tertulia.contacts.identities import contact_id_for
from tertulia.conversations import events
from tertulia.conversations import repository as repo
from tertulia.conversations.events import InboxEvent
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.kit.clock import utcnow


def do_apply_statuses(session: Session, updates: Sequence[tuple[Channel, StatusUpdate]]) -> int:
    """Providers' status callbacks, in arrival order; how many moves forward they made.

    One query finds every message they name and one their conversations, whatever their number; a
    status that cannot move its message forward (late, repeated, backwards, or for a message that
    is not ours) costs nothing more. The moves are worked out in memory, message by message, and
    written as one conditional UPDATE per final status (not one per status: at hundreds of receipts
    a second those round trips were a quarter of the worker's time); the condition still keeps a
    racing writer from moving a message backwards, and only messages the UPDATE moved get events."""
    updates = _by_message(session, updates)
    keys = [(channel.id, update.provider_message_id) for channel, update in updates]
    messages = {
        (message.channel_id, message.provider_message_id): message
        for message in repo.messages_by_provider_ids(session, keys)
        if message.direction == Direction.OUTGOING
    }
    steps: dict[int, list[tuple[DeliveryStatus, str | None]]] = {}
    by_id: dict[int, Message] = {}
    for channel, update in updates:
        message = messages.get((channel.id, update.provider_message_id))
        if message is None:
            continue
        taken = steps.get(message.id)
        current = taken[-1][0] if taken else message.status
        if not status_advances(current, update.status):
            continue
        by_id[message.id] = message
        steps.setdefault(message.id, []).append((update.status, update.reason))
    finals: dict[tuple[DeliveryStatus, str | None], list[int]] = {}
    for message_id, moves in steps.items():
        status, reason = moves[-1]
        finals.setdefault((status, reason if status == DeliveryStatus.FAILED else None), []).append(message_id)
    now = utcnow()
    written: set[int] = set()
    for (status, reason), message_ids in finals.items():
        written |= repo.advance_statuses(session, message_ids, status, reason, now)
    moved: list[tuple[Message, DeliveryStatus, str | None]] = []
    for message_id, moves in steps.items():
        if message_id not in written:
            continue
        message = by_id[message_id]
        final, final_reason = moves[-1]
        # What the UPDATE wrote, without making the session write it again.
        set_committed_value(message, "status", final)
        set_committed_value(message, "status_at", now)
        if final == DeliveryStatus.FAILED:
            set_committed_value(message, "status_reason", final_reason)
        moved.extend(
            (message, status, reason if status == DeliveryStatus.FAILED else message.status_reason)
            for status, reason in moves
        )
    if moved:
        ids = {message.conversation_id for message, _, _ in moved}
        conversations = {c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(ids)))}
        for message, status, reason in moved:
            _emit_status(session, conversations[message.conversation_id], message.id, status, reason)
    return len(moved)


WATERMARK_BATCH = 200


def _by_message(
    session: Session, updates: Sequence[tuple[Channel, StatusUpdate]]
) -> list[tuple[Channel, StatusUpdate]]:
    """Watermarks (Messenger: "everything sent to this customer up to then was read") as one update
    per message they cover that can still move forward; other updates as they are."""
    found: list[tuple[Channel, StatusUpdate]] = []
    for channel, update in updates:
        if update.up_to is None:
            found.append((channel, update))
            continue
        contact_id = (
            contact_id_for(session, channel.workspace_id, channel.type, update.recipient_id)
            if update.recipient_id
            else None
        )
        if contact_id is None:
            continue
        covered = session.scalars(
            select(Message.provider_message_id)
            .where(
                Message.channel_id == channel.id,
                Message.contact_id == contact_id,
                Message.direction == Direction.OUTGOING,
                Message.provider_message_id.is_not(None),
                Message.status.in_(STATUS_PREDECESSORS[update.status]),
                Message.created_at <= update.up_to,
            )
            .order_by(Message.id.desc())
            .limit(WATERMARK_BATCH)
        )
        found.extend((channel, StatusUpdate(str(mid), update.status, update.reason, update.at)) for mid in covered)
    return found


def _emit_status(
    session: Session, conversation: Conversation, message_id: int, status: DeliveryStatus, reason: str | None
) -> None:
    payload = {"message_id": message_id, "status": status.value, "reason": reason}
    events.emit(session, events.make_event(InboxEvent.MESSAGE_STATUS, conversation, payload, visitor=False))


def advance_many(session: Session, messages: Sequence[Message], status: DeliveryStatus, reason: str | None) -> set[int]:
    """`advance_message_status` for many messages: one UPDATE, and an event for each it moved; the ids
    it moved."""
    now = utcnow()
    moved = repo.advance_statuses(session, [message.id for message in messages], status, reason, now)
    if not moved:
        return moved
    ids = {message.conversation_id for message in messages if message.id in moved}
    conversations = {c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(ids)))}
    for message in messages:
        if message.id not in moved:
            continue
        set_committed_value(message, "status", status)
        set_committed_value(message, "status_at", now)
        if status == DeliveryStatus.FAILED:
            set_committed_value(message, "status_reason", reason)
        _emit_status(session, conversations[message.conversation_id], message.id, status, message.status_reason)
    return moved


def advance_message_status(session: Session, message: Message, status: DeliveryStatus, reason: str | None) -> bool:
    changed = repo.advance_status(session, message.id, status, reason, utcnow())
    if changed:
        session.refresh(message)
        conversation = session.get(Conversation, message.conversation_id)
        assert conversation is not None
        _emit_status(session, conversation, message.id, status, message.status_reason)
    return changed
