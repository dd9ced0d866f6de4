"""Starting and sending broadcasts (the queued tasks call these); see the service's docstring."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.broadcasts import repository as repo
from tertulia.broadcasts.audience import AudienceGone, Renderer, counts_of, snapshot
from tertulia.broadcasts.models import (
    Broadcast,
    BroadcastRecipient,
    BroadcastStatus,
    ChannelMode,
    ExclusionReason,
    FailureReason,
    OverLimit,
    RecipientState,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, channel_pace
from tertulia.channels.registry import get_adapter
from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation, ConversationStatus, Direction, Message, SenderKind
from tertulia.conversations.outbox import enqueue_send_many
from tertulia.events.service import Event, actor_label, emit
from tertulia.events.types import EventType
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed

log = structlog.get_logger()

# The share of a channel's pace broadcasts may take per tick; the rest is for agents' replies.
BROADCAST_SHARE = 0.8
# A channel whose adapter sets no pace (SMS providers, fakes) is fed this many per second.
DEFAULT_RATE = 20.0
TICK_SECONDS = 1.0
MAX_BATCH = 500


# ----- starting and sending (queued tasks call these) -------------------------------------------


def _event(session: Session, item: Broadcast, event_type: EventType, reason: str | None = None) -> None:
    counts = counts_of(session, item.id)
    payload: dict[str, Any] = {
        "broadcast_id": item.id,
        "name": item.name,
        "status": item.status.value,
        "recipients": counts.recipients,
        "excluded": counts.excluded,
    }
    if event_type == EventType.BROADCAST_FAILED:
        payload["reason"] = reason
    emit(session, Event(event_type, item.workspace_id, payload, actor=actor_label("system")))


def _fail(session: Session, item: Broadcast, reason: FailureReason, detail: str) -> None:
    item.status = BroadcastStatus.FAILED
    item.failure_reason = reason.value
    item.failure_detail = detail
    item.finished_at = utcnow()
    repo.skip_waiting(session, item.id, reason.value)
    session.flush()
    _event(session, item, EventType.BROADCAST_FAILED, reason.value)


def start(db: Database, broadcast_id: int) -> str:
    """Start a due scheduled broadcast: snapshot its audience and begin sending. Idempotent: only the
    transaction that moves it from scheduled to sending does anything."""
    with db.transaction() as session:
        item = session.scalar(select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update())
        now = utcnow()
        if item is None or item.status != BroadcastStatus.SCHEDULED:
            return "skipped"
        if item.scheduled_at is not None and as_utc(item.scheduled_at) > now:
            return "early"
        # A start that crashed half-way rolled back; a finished one moved the status on.
        try:
            limits = snapshot(session, item, now)
        except AudienceGone as exc:
            _fail(session, item, exc.reason, exc.detail)
            return "failed"
        over = sum(check.over for check in limits)
        counts = counts_of(session, item.id)
        item.started_at = now
        if over and item.over_limit == OverLimit.REFUSE:
            _fail(session, item, FailureReason.OVER_MESSAGING_LIMIT, f"{over} recipients over the messaging limit")
            return "failed"
        if counts.recipients == 0:
            _fail(session, item, FailureReason.EMPTY_AUDIENCE, "nobody in the audience can receive it")
            return "failed"
        item.status = BroadcastStatus.SENDING
        session.flush()
        _event(session, item, EventType.BROADCAST_STARTED)
    return "started"


@dataclass
class Tick:
    state: str  # "more" (recipients waiting), "finishing" (messages in the outbox), "done", "stopped"
    written: int = 0


def pump(db: Database, broadcast_id: int, clock: Callable[[], datetime] = utcnow) -> Tick:
    """One turn of sending: for each channel with waiting recipients, claim this broadcast's share of
    the channel's pace and write their messages (queued to the outbox after commit)."""
    with db.transaction() as session:
        item = session.scalar(select(Broadcast).where(Broadcast.id == broadcast_id))
        if item is None or item.status != BroadcastStatus.SENDING:
            return Tick("stopped")
        channel_ids = repo.waiting_channels(session, item.id)
    written = 0
    for channel_id in channel_ids:
        written += _pump_channel(db, broadcast_id, channel_id, clock)
    with db.transaction() as session:
        item = session.scalar(select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update())
        if item is None or item.status != BroadcastStatus.SENDING:
            return Tick("stopped", written)
        if repo.waiting_count(session, item.id):
            return Tick("more", written)
        if repo.pending_of(session, item.id):
            return Tick("finishing", written)
        item.status = BroadcastStatus.COMPLETED
        item.finished_at = clock()
        session.flush()
        _event(session, item, EventType.BROADCAST_COMPLETED)
    return Tick("done", written)


def channel_budget(session: Session, channel: Channel, broadcasts_sharing: int) -> int:
    """How many of this broadcast's recipients may be released on the channel in this tick."""
    pace = channel_pace(get_adapter(channel.type).rules, channel)
    rate = pace.messages / pace.seconds if pace is not None else DEFAULT_RATE
    room = math.floor(rate * TICK_SECONDS * BROADCAST_SHARE) - repo.pending_broadcast_messages(
        session, channel.workspace_id, channel.id
    )
    if room <= 0:
        return 0
    return min(MAX_BATCH, max(1, math.ceil(room / max(1, broadcasts_sharing))))


def _pump_channel(db: Database, broadcast_id: int, channel_id: int, clock: Callable[[], datetime]) -> int:
    with db.transaction() as session:
        item = session.scalar(select(Broadcast).where(Broadcast.id == broadcast_id))
        channel = session.get(Channel, channel_id)
        if item is None or item.status != BroadcastStatus.SENDING:
            return 0
        if channel is None or not channel.active:
            if item.channel_mode == ChannelMode.SPECIFIC:
                _fail(session, item, FailureReason.CHANNEL_DISCONNECTED, "the broadcast's channel was disconnected")
            else:
                repo.skip_waiting(session, item.id, FailureReason.CHANNEL_DISCONNECTED.value, channel_id)
            return 0
        budget = channel_budget(session, channel, repo.sending_on_channel(session, channel.id))
        if budget <= 0:
            return 0
        claimed = repo.claim_waiting(session, item.id, channel.id, budget)
        if not claimed:
            return 0
        message_ids = _write_messages(session, item, channel, claimed, clock())
        for hook in AFTER_BATCH_WRITTEN:
            hook(item.id)
    # In batches: one claim and one record transaction per batch, not three per message.
    enqueue_send_many(message_ids)
    return len(claimed)


# Test-only: called with the broadcast id after a batch's messages are written and before its
# transaction commits, to simulate a worker killed at that moment.
AFTER_BATCH_WRITTEN: list[Callable[[int], None]] = []


def _write_messages(
    session: Session, item: Broadcast, channel: Channel, claimed: Sequence[BroadcastRecipient], now: datetime
) -> list[int]:
    adapter = get_adapter(channel.type)
    contact_ids = [r.contact_id for r in claimed]
    contacts = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))}
    identities = repo.identities_of(session, channel, contact_ids)
    conversations = repo.latest_conversations(session, contact_ids)
    missing = [cid for cid in contact_ids if cid not in conversations and cid in contacts]
    if missing:
        # A broadcast opens no conversation: a contact without one gets a closed one to hold the
        # message in their history; their reply opens a new conversation as any message does.
        created = [
            Conversation(
                workspace_id=item.workspace_id,
                contact_id=cid,
                channel_id=channel.id,
                status=ConversationStatus.CLOSED,
                bot_paused=False,
                opened_at=now,
                closed_at=now,
                last_message_at=now,
            )
            for cid in missing
        ]
        session.add_all(created)
        session.flush()
        conversations.update({c.contact_id: c.id for c in created})
    renderer = Renderer.of(session, item)
    written: list[tuple[BroadcastRecipient, Message]] = []
    for recipient in claimed:
        contact = contacts.get(recipient.contact_id)
        external = next(
            (e for e in identities.get(recipient.contact_id, []) if adapter.owns_identity(channel, e)), None
        )
        if contact is None or external is None:
            recipient.state, recipient.reason = RecipientState.SKIPPED, ExclusionReason.NO_IDENTITY.value
            continue
        try:
            rendered = renderer.render(channel, contact)
        except ValidationFailed as exc:
            recipient.state, recipient.reason = RecipientState.SKIPPED, (exc.code or "render_failed")[:40]
            continue
        message = Message(
            workspace_id=item.workspace_id,
            conversation_id=conversations[contact.id],
            contact_id=contact.id,
            channel_id=channel.id,
            direction=Direction.OUTGOING,
            sender_kind=SenderKind.BROADCAST,
            sender_user_id=None,
            type=rendered.type,
            text=rendered.text,
            attachments=rendered.attachments,
            payload={**rendered.payload, "recipient_id": external},
            status=DeliveryStatus.PENDING,
            status_at=now,
            attempts=0,
            created_at=now,
        )
        written.append((recipient, message))
    session.add_all([m for _, m in written])
    session.flush()
    for recipient, message in written:
        recipient.state = RecipientState.MESSAGED
        recipient.message_id = message.id
        recipient.messaged_at = now
    repo.touch_contacts_written(session, [m.contact_id for _, m in written], now)
    session.flush()
    by_id = {
        c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(set(conversations.values()))))
    }
    for _, message in written:
        conversations_service.customer_message_created(session, by_id[message.conversation_id], message)
    return [m.id for _, m in written]


def due_and_sending(db: Database) -> tuple[list[int], list[int]]:
    with db.transaction(write=False) as session:
        return repo.due_broadcast_ids(session, utcnow()), repo.sending_broadcast_ids(session)
