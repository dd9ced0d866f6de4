"""All SQL for broadcasts. Every query is scoped to a workspace or to one broadcast of it.

The audience is written set-based: one INSERT ... SELECT from the segment compiler's clause, then one
UPDATE per exclusion reason over the rows still waiting, each a statement over the whole audience;
no contact is looked at one by one in Python.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, aliased

from tertulia.broadcasts.models import (
    Broadcast,
    BroadcastOptOut,
    BroadcastRecipient,
    BroadcastSettings,
    BroadcastStatus,
    ExclusionReason,
    RecipientState,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, MessageType
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations.models import Conversation, Direction, Message, SenderKind, SmsConsent

R = BroadcastRecipient


def broadcast(session: Session, workspace_id: int, broadcast_id: int, *, lock: bool = False) -> Broadcast | None:
    query = select(Broadcast).where(Broadcast.workspace_id == workspace_id, Broadcast.id == broadcast_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def broadcasts_page(
    session: Session,
    workspace_id: int,
    *,
    status: str | None,
    label: str | None,
    before_id: int | None,
    limit: int,
    scheduled_from: datetime | None = None,
    scheduled_to: datetime | None = None,
) -> list[Broadcast]:
    query = select(Broadcast).where(Broadcast.workspace_id == workspace_id)
    if status is not None:
        query = query.where(Broadcast.status == status)
    if scheduled_from is not None:
        query = query.where(Broadcast.scheduled_at >= scheduled_from)
    if scheduled_to is not None:
        query = query.where(Broadcast.scheduled_at < scheduled_to)
    if before_id is not None:
        query = query.where(Broadcast.id < before_id)
    if label is not None:
        if session.get_bind().dialect.name == "postgresql":
            query = query.where(Broadcast.labels.op("@>")(cast([label], JSONB)))
        else:
            labels = func.json_each(Broadcast.labels).table_valued("value")
            query = query.where(exists(select(labels.c.value).where(labels.c.value == label)))
    return list(session.scalars(query.order_by(Broadcast.id.desc()).limit(limit + 1)))


def due_broadcast_ids(session: Session, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Broadcast.id)
            .where(Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.scheduled_at <= now)
            .order_by(Broadcast.scheduled_at)
        )
    )


def sending_broadcast_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Broadcast.id).where(Broadcast.status == BroadcastStatus.SENDING)))


# ----- the snapshot -----------------------------------------------------------------------------


def insert_audience(
    session: Session,
    item: Broadcast,
    audience: ColumnElement[bool],
    excluded: ColumnElement[bool] | None,
    now: datetime,
    channel_id: int | None = None,
) -> int:
    """INSERT ... SELECT every contact `audience` selects (it carries the workspace scope); those
    `excluded` selects are written excluded (reason excluded_segment). `channel_id`: the channel of
    the rows written waiting, when the broadcast has one (set here rather than by a second UPDATE of
    every row: at 100,000 recipients that UPDATE took as long as the INSERT). Returns the rows written."""
    is_excluded: ColumnElement[Any] = excluded if excluded is not None else false()
    channel: ColumnElement[Any] = (
        case((is_excluded, literal(None, type_=R.channel_id.type)), else_=literal(channel_id, type_=R.channel_id.type))
        if channel_id is not None
        else literal(None, type_=R.channel_id.type)
    )
    select_audience = select(
        Contact.workspace_id,
        literal(item.id),
        Contact.id,
        case((is_excluded, literal(RecipientState.EXCLUDED.value)), else_=literal(RecipientState.WAITING.value)),
        case((is_excluded, literal(ExclusionReason.EXCLUDED_SEGMENT.value)), else_=None),
        false(),
        literal(now, type_=R.created_at.type),
        channel,
    ).where(audience, Contact.workspace_id == item.workspace_id)
    result = session.execute(
        insert(R).from_select(
            [
                "workspace_id",
                "broadcast_id",
                "contact_id",
                "state",
                "reason",
                "needs_template",
                "created_at",
                "channel_id",
            ],
            select_audience,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def refresh_statistics(session: Session) -> None:
    """PostgreSQL's statistics of the recipient rows, as this transaction has just written them.

    The exclusions join a snapshot's rows (by channel) to identities and conversations. Planned with
    the table's old statistics (often none: it was nearly empty), 100,000 fresh rows got a nested loop
    over every identity of the workspace per row: minutes instead of a second. ANALYZE in this
    transaction counts its own rows."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE broadcast_recipients"))


def failed_contacts_of(broadcast_id: int) -> ColumnElement[bool]:
    """The contacts whose message of that broadcast failed (the audience of a resend)."""
    failed = (
        select(R.contact_id)
        .join(Message, Message.id == R.message_id)
        .where(R.broadcast_id == broadcast_id, Message.status == DeliveryStatus.FAILED)
    )
    return Contact.id.in_(failed)


def _exclude(
    session: Session,
    broadcast_id: int,
    reason: ExclusionReason,
    condition: ColumnElement[bool],
    *,
    channel_too: bool = False,
) -> int:
    """Waiting rows that `condition` selects become excluded for `reason`; `channel_too`: their channel
    is cleared too (excluded before any channel was theirs: blocked, opted out)."""
    values: dict[str, Any] = {"state": RecipientState.EXCLUDED, "reason": reason.value}
    if channel_too:
        values["channel_id"] = None
    result = session.execute(
        update(R)
        .where(R.broadcast_id == broadcast_id, R.state == RecipientState.WAITING, condition)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def exclude_blocked(session: Session, item: Broadcast) -> int:
    blocked = select(Contact.id).where(Contact.workspace_id == item.workspace_id, Contact.blocked.is_(True))
    return _exclude(session, item.id, ExclusionReason.BLOCKED, R.contact_id.in_(blocked), channel_too=True)


def exclude_opted_out(session: Session, item: Broadcast) -> int:
    opted = select(BroadcastOptOut.contact_id).where(BroadcastOptOut.workspace_id == item.workspace_id)
    return _exclude(session, item.id, ExclusionReason.OPTED_OUT, R.contact_id.in_(opted), channel_too=True)


def assign_last_interacted(session: Session, broadcast_id: int, channel_ids: Sequence[int]) -> None:
    """Each waiting recipient's channel: of `channel_ids`, the one of their newest incoming message,
    else of the newest message written to them (one correlated subquery on messages (contact_id, id))."""
    if not channel_ids:
        return
    for direction in (Direction.INCOMING, Direction.OUTGOING):
        newest = (
            select(Message.channel_id)
            .where(
                Message.contact_id == R.contact_id,
                Message.direction == direction,
                Message.channel_id.in_(list(channel_ids)),
            )
            .order_by(Message.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        session.execute(
            update(R)
            .where(R.broadcast_id == broadcast_id, R.state == RecipientState.WAITING, R.channel_id.is_(None))
            .values(channel_id=newest)
            .execution_options(synchronize_session=False)
        )


def identity_condition(channel: Channel, contact_id: Any) -> ColumnElement[bool]:
    """Whether the contact has an identity this channel can address (the SQL twin of the adapters'
    `owns_identity`; the outbox's recipient lookup has the last word)."""
    condition = and_(
        ContactIdentity.workspace_id == channel.workspace_id,
        ContactIdentity.contact_id == contact_id,
        ContactIdentity.channel == channel.type,
    )
    if channel.type == "webchat":
        condition = and_(condition, ContactIdentity.external_id.like(f"{channel.id}:%"))
    if channel.type in ("twilio", "vonage", "bird"):
        condition = and_(condition, ContactIdentity.external_id.like("+%"))
    return exists(select(ContactIdentity.id).where(condition))


def exclude_without_identity(session: Session, item: Broadcast, channels: Sequence[Channel]) -> int:
    count = _exclude(session, item.id, ExclusionReason.NO_IDENTITY, R.channel_id.is_(None))
    for channel in channels:
        count += _exclude(
            session,
            item.id,
            ExclusionReason.NO_IDENTITY,
            and_(R.channel_id == channel.id, ~identity_condition(channel, R.contact_id)),
        )
    return count


def exclude_sms_opted_out(session: Session, item: Broadcast, channel: Channel) -> int:
    """Numbers that texted STOP (or BAJA, ...) to this SMS channel: our own consent record."""
    opted = exists(
        select(SmsConsent.id)
        .join(ContactIdentity, ContactIdentity.external_id == SmsConsent.recipient)
        .where(
            SmsConsent.channel_id == channel.id,
            SmsConsent.opted_out.is_(True),
            ContactIdentity.contact_id == R.contact_id,
            ContactIdentity.channel == channel.type,
        )
    )
    return _exclude(session, item.id, ExclusionReason.OPTED_OUT, and_(R.channel_id == channel.id, opted))


def wrote_since(channel_id: int, since: datetime) -> ColumnElement[bool]:
    """The recipient wrote on this channel after `since` (their reply window is open)."""
    return exists(
        select(Message.id).where(
            Message.contact_id == R.contact_id,
            Message.channel_id == channel_id,
            Message.direction == Direction.INCOMING,
            Message.created_at > since,
        )
    )


def exclude_window_closed(session: Session, item: Broadcast, channel_id: int, since: datetime) -> int:
    return _exclude(
        session,
        item.id,
        ExclusionReason.WINDOW_CLOSED,
        and_(R.channel_id == channel_id, ~wrote_since(channel_id, since)),
    )


def mark_needs_template(session: Session, broadcast_id: int, channel_id: int, since: datetime) -> int:
    result = session.execute(
        update(R)
        .where(
            R.broadcast_id == broadcast_id,
            R.state == RecipientState.WAITING,
            R.channel_id == channel_id,
            ~wrote_since(channel_id, since),
        )
        .values(needs_template=True)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def exclude_empty_variables(
    session: Session, item: Broadcast, channel_ids: Sequence[int], empty: ColumnElement[bool]
) -> int:
    """`empty` is true for a contact missing a variable the content needs and gives no fallback for."""
    missing = select(Contact.id).where(Contact.workspace_id == item.workspace_id, empty)
    return _exclude(
        session,
        item.id,
        ExclusionReason.VARIABLE_EMPTY,
        and_(R.channel_id.in_(list(channel_ids)), R.contact_id.in_(missing)),
    )


def waiting_contacts_where(
    session: Session, broadcast_id: int, channel_id: int, condition: ColumnElement[bool]
) -> list[int]:
    """The contacts waiting on this channel for whom `condition` (over contacts) holds, by id."""
    return [
        int(c)
        for c in session.scalars(
            select(R.contact_id)
            .join(Contact, Contact.id == R.contact_id)
            .where(
                R.broadcast_id == broadcast_id,
                R.state == RecipientState.WAITING,
                R.channel_id == channel_id,
                condition,
            )
            .order_by(R.contact_id)
        )
    ]


def exclude_contacts(
    session: Session, broadcast_id: int, channel_id: int, contact_ids: Sequence[int], reason: ExclusionReason
) -> int:
    """These contacts, waiting on this channel, are excluded for `reason` (in batches of ids)."""
    done = 0
    for start in range(0, len(contact_ids), 500):
        batch = list(contact_ids[start : start + 500])
        done += _exclude(session, broadcast_id, reason, and_(R.channel_id == channel_id, R.contact_id.in_(batch)))
    return done


def business_initiated_contacts(session: Session, channel_id: int, since: datetime) -> int:
    """Unique contacts sent a template on this channel since `since` (what a WhatsApp number's
    messaging limit counts)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Message.contact_id))).where(
                Message.channel_id == channel_id,
                Message.direction == Direction.OUTGOING,
                Message.type == MessageType.TEMPLATE,
                Message.created_at > since,
            )
        )
        or 0
    )


def exclude_past_limit(session: Session, item: Broadcast, channel_id: int, room: int) -> int:
    """The template recipients on this channel after the first `room` (by id) are over the limit."""
    past = (
        select(R.id)
        .where(
            R.broadcast_id == item.id,
            R.state == RecipientState.WAITING,
            R.channel_id == channel_id,
            R.needs_template.is_(True),
        )
        .order_by(R.id)
        .offset(room)
    )
    if session.get_bind().dialect.name == "sqlite":
        past = past.limit(-1)
    return _exclude(session, item.id, ExclusionReason.MESSAGING_LIMIT, R.id.in_(past))


def waiting_channels(session: Session, broadcast_id: int) -> list[int]:
    return [
        int(c)
        for c in session.scalars(
            select(R.channel_id)
            .where(R.broadcast_id == broadcast_id, R.state == RecipientState.WAITING, R.channel_id.is_not(None))
            .distinct()
        )
        if c is not None
    ]


def waiting_count(session: Session, broadcast_id: int, channel_id: int | None = None) -> int:
    query = select(func.count()).where(R.broadcast_id == broadcast_id, R.state == RecipientState.WAITING)
    if channel_id is not None:
        query = query.where(R.channel_id == channel_id)
    return int(session.scalar(query) or 0)


# ----- counts -----------------------------------------------------------------------------------


def state_counts(session: Session, broadcast_id: int) -> list[tuple[str, str | None, int | None, bool, int]]:
    """(state, reason, channel id, needs template, count) over the broadcast's recipients."""
    rows = session.execute(
        select(R.state, R.reason, R.channel_id, R.needs_template, func.count())
        .where(R.broadcast_id == broadcast_id)
        .group_by(R.state, R.reason, R.channel_id, R.needs_template)
    )
    return [(str(r[0]), r[1], r[2], bool(r[3]), int(r[4])) for r in rows]


def delivery_counts(session: Session, broadcast_id: int) -> dict[str, int]:
    """Messages by delivery status, and how many recipients replied."""
    rows = session.execute(
        select(Message.status, func.count())
        .select_from(R)
        .join(Message, Message.id == R.message_id)
        .where(R.broadcast_id == broadcast_id)
        .group_by(Message.status)
    )
    counts = {str(status): int(n) for status, n in rows if status is not None}
    counts["replied"] = int(
        session.scalar(select(func.count()).where(R.broadcast_id == broadcast_id, R.replied_at.is_not(None))) or 0
    )
    return counts


def summaries(session: Session, broadcast_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """For a page of broadcasts, three grouped queries: recipients by state, messages by delivery
    status, and replies, keyed by broadcast id."""
    found: dict[int, dict[str, int]] = {b: {} for b in broadcast_ids}
    if not broadcast_ids:
        return found
    ids = list(broadcast_ids)
    for broadcast_id, state, n in session.execute(
        select(R.broadcast_id, R.state, func.count()).where(R.broadcast_id.in_(ids)).group_by(R.broadcast_id, R.state)
    ):
        found[int(broadcast_id)][f"state:{state}"] = int(n)
    for broadcast_id, status, n in session.execute(
        select(R.broadcast_id, Message.status, func.count())
        .join(Message, Message.id == R.message_id)
        .where(R.broadcast_id.in_(ids))
        .group_by(R.broadcast_id, Message.status)
    ):
        found[int(broadcast_id)][str(status)] = int(n)
    for broadcast_id, n in session.execute(
        select(R.broadcast_id, func.count())
        .where(R.broadcast_id.in_(ids), R.replied_at.is_not(None))
        .group_by(R.broadcast_id)
    ):
        found[int(broadcast_id)]["replied"] = int(n)
    return found


def recipients_query(
    broadcast_id: int,
    *,
    status: str | None = None,
    reason: str | None = None,
    channel_id: int | None = None,
    replied: bool | None = None,
) -> Any:
    """Recipients with their contact's name and their message's status, oldest first (by id).
    `status` is a recipient state (waiting, excluded, skipped) or a delivery status (pending, sent,
    delivered, read, failed)."""
    query = (
        select(
            R,
            Contact.first_name,
            Contact.last_name,
            Contact.phone,
            Contact.email,
            Message.status,
            Message.status_reason,
            Message.status_at,
        )
        .join(Contact, Contact.id == R.contact_id)
        .outerjoin(Message, Message.id == R.message_id)
        .where(R.broadcast_id == broadcast_id)
    )
    if status is not None:
        if status in {s.value for s in RecipientState}:
            query = query.where(R.state == status)
        else:
            query = query.where(Message.status == status)
    if reason is not None:
        query = query.where(or_(R.reason == reason, Message.status_reason == reason))
    if channel_id is not None:
        query = query.where(R.channel_id == channel_id)
    if replied is not None:
        query = query.where(R.replied_at.is_not(None) if replied else R.replied_at.is_(None))
    return query.order_by(R.id)


# ----- sending ----------------------------------------------------------------------------------


def claim_waiting(session: Session, broadcast_id: int, channel_id: int, limit: int) -> list[BroadcastRecipient]:
    """The next `limit` waiting recipients on the channel, locked; on PostgreSQL rows another worker
    holds are skipped (FOR UPDATE SKIP LOCKED), so several workers send one broadcast together. On
    SQLite the write transaction is the lock."""
    query = (
        select(R)
        .where(R.broadcast_id == broadcast_id, R.state == RecipientState.WAITING, R.channel_id == channel_id)
        .order_by(R.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def skip_waiting(session: Session, broadcast_id: int, reason: str, channel_id: int | None = None) -> int:
    query = update(R).where(R.broadcast_id == broadcast_id, R.state == RecipientState.WAITING)
    if channel_id is not None:
        query = query.where(R.channel_id == channel_id)
    result = session.execute(
        query.values(state=RecipientState.SKIPPED, reason=reason).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def pending_broadcast_messages(session: Session, workspace_id: int, channel_id: int) -> int:
    """Broadcast messages on the channel still waiting in the outbox (every broadcast's)."""
    return int(
        session.scalar(
            select(func.count()).where(
                Message.workspace_id == workspace_id,
                Message.status == DeliveryStatus.PENDING,
                Message.channel_id == channel_id,
                Message.sender_kind == SenderKind.BROADCAST,
            )
        )
        or 0
    )


def pending_of(session: Session, broadcast_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(R)
            .join(Message, Message.id == R.message_id)
            .where(R.broadcast_id == broadcast_id, Message.status == DeliveryStatus.PENDING)
        )
        or 0
    )


def sending_on_channel(session: Session, channel_id: int) -> int:
    """How many sending broadcasts still have recipients waiting on this channel (they share it)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(R.broadcast_id)))
            .join(Broadcast, Broadcast.id == R.broadcast_id)
            .where(
                Broadcast.status == BroadcastStatus.SENDING,
                R.state == RecipientState.WAITING,
                R.channel_id == channel_id,
            )
        )
        or 0
    )


def latest_conversations(session: Session, contact_ids: Sequence[int]) -> dict[int, int]:
    """Each contact's newest conversation (open or closed), by contact id."""
    if not contact_ids:
        return {}
    rows = session.execute(
        select(Conversation.contact_id, func.max(Conversation.id))
        .where(Conversation.contact_id.in_(list(contact_ids)))
        .group_by(Conversation.contact_id)
    )
    return {int(r[0]): int(r[1]) for r in rows}


def identities_of(session: Session, channel: Channel, contact_ids: Sequence[int]) -> dict[int, list[str]]:
    """Each contact's external ids of the channel's type, newest first."""
    rows = session.execute(
        select(ContactIdentity.contact_id, ContactIdentity.external_id)
        .where(
            ContactIdentity.workspace_id == channel.workspace_id,
            ContactIdentity.channel == channel.type,
            ContactIdentity.contact_id.in_(list(contact_ids)),
        )
        .order_by(ContactIdentity.id.desc())
    )
    found: dict[int, list[str]] = {}
    for contact_id, external_id in rows:
        found.setdefault(int(contact_id), []).append(str(external_id))
    return found


def touch_contacts_written(session: Session, contact_ids: Sequence[int], now: datetime) -> None:
    session.execute(
        update(Contact)
        .where(Contact.id.in_(list(contact_ids)))
        .values(last_outgoing_at=now)
        .execution_options(synchronize_session=False)
    )


# ----- replies and opt-outs ---------------------------------------------------------------------


# Built once, its ids bound per call: the inbox asks it for every batch of customers' messages, and
# building a statement and its cache key cost about half as much again as running it.
_REPLY_CANDIDATES = (
    select(
        R.id,
        R.broadcast_id,
        R.contact_id,
        R.channel_id,
        R.message_id,
        R.messaged_at,
        Broadcast.reply_window_hours,
        Broadcast.reply_workflow_id,
    )
    .join(Broadcast, Broadcast.id == R.broadcast_id)
    .where(
        R.contact_id.in_(bindparam("contact_ids", expanding=True)),
        R.replied_at.is_(None),
        R.state == RecipientState.MESSAGED,
    )
    .order_by(R.id)
)


def reply_candidates(
    session: Session, contact_ids: Sequence[int]
) -> list[tuple[int, int, int, int, int, Any, int, int | None]]:
    """The messaged, not yet replied recipient rows of these contacts: (recipient id, broadcast id,
    contact id, channel id, message id, messaged at, reply window hours, workflow id). Served by
    the index on (contact_id, replied_at)."""
    rows = session.execute(_REPLY_CANDIDATES, {"contact_ids": list(contact_ids)})
    return [tuple(row) for row in rows]  # type: ignore[misc]


def mark_replied(session: Session, recipient_id: int, reply_message_id: int, at: datetime) -> bool:
    """A conditional UPDATE: a recipient is marked replied once, whoever tries twice."""
    result = session.execute(
        update(R)
        .where(R.id == recipient_id, R.replied_at.is_(None))
        .values(replied_at=at, reply_message_id=reply_message_id)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def conversations_opened_by_a_reply(
    session: Session, contact_ids: Sequence[int], conversation_ids: Sequence[int]
) -> set[int]:
    """Of these conversations (of these contacts), those whose first message is a reply to a broadcast:
    the reply opened them (`do_record_replies` marks it in the transaction that writes it). A reply
    written into a conversation already open does not count. Served by the index on (contact_id,
    replied_at)."""
    if not conversation_ids:
        return set()
    earlier = aliased(Message)
    rows = session.scalars(
        select(Message.conversation_id)
        .select_from(R)
        .join(Message, Message.id == R.reply_message_id)
        .where(
            R.contact_id.in_(sorted(set(contact_ids))),
            R.replied_at.is_not(None),
            Message.conversation_id.in_(sorted(set(conversation_ids))),
            ~exists(
                select(earlier.id).where(earlier.conversation_id == Message.conversation_id, earlier.id < Message.id)
            ),
        )
    )
    return set(rows)


def settings_of(session: Session, workspace_id: int) -> BroadcastSettings | None:
    return session.get(BroadcastSettings, workspace_id)


def opt_out(session: Session, workspace_id: int, contact_id: int) -> BroadcastOptOut | None:
    return session.scalar(
        select(BroadcastOptOut).where(
            BroadcastOptOut.workspace_id == workspace_id, BroadcastOptOut.contact_id == contact_id
        )
    )


def move_to_survivor(session: Session, survivor_id: int, merged_id: int) -> None:
    """A merge: the merged contact's recipient rows and opt-out become the survivor's, except where
    the survivor already has one (the survivor's is kept; the other goes with the merged contact)."""
    survivor_broadcasts = select(R.broadcast_id).where(R.contact_id == survivor_id)
    session.execute(
        update(R)
        .where(R.contact_id == merged_id, R.broadcast_id.not_in(survivor_broadcasts))
        .values(contact_id=survivor_id)
        .execution_options(synchronize_session=False)
    )
    if session.scalar(select(BroadcastOptOut.id).where(BroadcastOptOut.contact_id == survivor_id)) is None:
        session.execute(
            update(BroadcastOptOut)
            .where(BroadcastOptOut.contact_id == merged_id)
            .values(contact_id=survivor_id)
            .execution_options(synchronize_session=False)
        )
