"""The outbox: delivering outgoing messages through their channel's adapter.

A message is written with status `pending` in the same transaction as everything else; this task
is queued after commit with its id. The task:
1. claims an attempt (attempts += 1) in a short transaction and skips the message unless it is
   still pending: a retried or duplicated task never sends twice once the provider id is recorded;
2. calls the adapter outside any transaction (SQLite writers must not wait on a provider), with
   our message id as the idempotency key: if the process dies after the provider accepted the
   message but before step 3 commits, the retry carries the same key and the provider (or the
   adapter's own dedupe) drops the repeat;
3. records the provider id and status (monotonic), or the failure and its reason.

Transient errors are retried with exponential backoff up to `outbox_max_attempts`; permanent ones
fail the message at once. A channel whose rules set a pace (Telegram: 30 messages a second per bot, one
a second per chat; WhatsApp: 80 a second per number, or the channel's `messages_per_second`, and one
every 6 seconds to the same customer) has its messages wait their turn: the task is queued again for
when the pace allows, without counting an attempt, and behind older messages still pending to the
same recipient, so a paced burst keeps its order. The pace is a sliding-window log of recent sends
per channel and per recipient (`outbound_pace`), read and written under a row lock in the
transaction that claims the attempt, so every worker process counts the same sends and no window
of the log holds more sends than the pace allows (each counted when it is claimed; the provider
receives it a commit and a round trip later). A message the channel cannot take yet is given the
channel's next free slot and queued for that moment (`pace_turn`), so a backlog drains at the pace
with one extra check per message rather than being retried all at once. Each send records the
channel's health (channels/health.py): the last message the provider accepted, or the last error.
`requeue_stuck_outbound` (periodic) re-queues pending messages whose task was lost (a worker killed
mid-task), so no message is lost either.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from huey import crontab
from huey.exceptions import RetryTask
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tertulia.channels.health import record_error, touch_sent
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    DeliveryStatus,
    OutboundMessage,
    Pace,
    PermanentError,
    TransientError,
    channel_pace,
)
from tertulia.channels.registry import get_adapter
from tertulia.contacts import identities
from tertulia.conversations import email_threads, sms_consent
from tertulia.conversations import repository as repo
from tertulia.conversations.files import do_sweep_unsent_uploads
from tertulia.conversations.models import Direction, Message, OutboundPace, StoredFile
from tertulia.conversations.status import advance_message_status
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.queue import huey, task_database
from tertulia.kit.settings import get_settings

log = structlog.get_logger()

# Test-only: called with the message id right after the provider accepted it and before the
# result is committed, to simulate a worker killed at the worst moment.
AFTER_PROVIDER_CALL: list[Callable[[int], None]] = []
STUCK_AFTER = timedelta(minutes=15)
MAX_BACKOFF_SECONDS = 600.0


@dataclass(frozen=True)
class Outcome:
    state: str  # "sent", "skipped", "failed", "retry"
    retry_in: float | None = None
    reason: str | None = None
    slot: float | None = None  # paced: the turn it holds, given back when it is tried again


def backoff(attempt: int, base: float) -> float:
    return float(min(MAX_BACKOFF_SECONDS, base * (2 ** max(0, attempt - 1))))


def _pace_key(prefix: str, *parts: str) -> str:
    key = ":".join((prefix, *parts))
    # Recipient ids are bounded but long ones (BSUIDs, addresses) could pass the column's length.
    return key if len(key) <= 200 else f"{prefix}:{hashlib.sha256(key.encode()).hexdigest()}"


@dataclass(frozen=True)
class Turn:
    """When a message may go under its channel's paces: now (`wait` 0, the send counted), or after
    `wait` seconds, holding the channel's slot `slot` (seconds since the epoch) when one was given."""

    wait: float
    slot: float | None = None


# A send is counted when it is claimed and reaches the provider a commit and a request later, sooner
# or later depending on the machine's load: windows are kept this much longer than the provider's, so
# the provider never sees more than its pace in any of its own (a number at 80/s sent 81 in one second
# without it, under load). The cost is as much of the rate.
HEADROOM = 0.05


def window(pace: Pace) -> float:
    """The span in which the outbox allows `pace.messages` sends: the provider's, with HEADROOM."""
    return pace.seconds * (1 + HEADROOM)


def _recent(row: OutboundPace, pace: Pace, moment: float) -> list[float]:
    return sorted(float(t) for t in row.sent_at or [] if float(t) > moment - window(pace))


def _count(row: OutboundPace, pace: Pace, kept: list[float], at: float) -> None:
    row.sent_at = [*kept, round(at, 6)]
    row.expires_at = datetime.fromtimestamp(max([at, *(row.scheduled or [])]) + window(pace), tz=UTC)


def pace_turn(
    session: Session,
    rules: ChannelRules,
    channel: Channel,
    recipient_id: str,
    clock: Callable[[], datetime],
    held: float | None = None,
) -> Turn:
    """This message's turn under the channel's paces; `held` is the slot it was given earlier.

    Two records per pace, both in the database so every worker process counts the same sends:
    - the claims: a sliding-window log of when sends were really claimed; a send is claimed only
      while no window of the pace would hold more (the hard limit);
    - the schedule (channel paces): the turns given, in order. A message that cannot go at once, or
      that arrives while others wait their turn, is given the earliest slot that keeps the schedule
      within the pace and is queued for that moment. Without slots every waiting message was retried
      at the same moment and most retries only re-locked the pace row to be turned away again, which
      kept a busy number far below its rate. A slot is a turn, not a licence: at its moment the claim
      still passes the sliding window, and waits a little more if the sends before it ran late.
    A recipient who must wait is not given a channel slot (it would sit unused for seconds).
    Both records are locked in key order (the channel's sorts first), so two workers never wait on
    each other in a cycle. The time is read once they are locked: a worker that waited for the lock
    counts its send when it really goes, not when it started waiting."""
    per_channel = channel_pace(rules, channel)
    per_recipient = rules.recipient_pace
    channel_key = _pace_key("c", channel.key)
    recipient_key = _pace_key("r", channel.key, recipient_id)
    keys = sorted([*([channel_key] if per_channel else []), *([recipient_key] if per_recipient else [])])
    if not keys:
        return Turn(0.0)
    rows = _locked_pace_rows(session, keys)
    if len(rows) < len(keys):  # a first send on this channel or to this recipient lately
        _ensure_pace_rows(session, keys, clock())
        rows = _locked_pace_rows(session, keys)
    moment = clock().timestamp()
    recipient_log: list[float] = []
    if per_recipient is not None:
        recipient_log = _recent(rows[recipient_key], per_recipient, moment)
        if held is not None:
            # Its place in the recipient's log was taken with the slot; it is counted again below.
            recipient_log = [t for t in recipient_log if t != round(held, 6)]
        elif len(recipient_log) >= per_recipient.messages:
            return Turn(recipient_log[-per_recipient.messages] + window(per_recipient) - moment)
    at = moment
    if per_channel is not None:
        row = rows[channel_key]
        most, span = per_channel.messages, window(per_channel)
        claims = _recent(row, per_channel, moment)
        full = len(claims) >= most
        if held is not None and full:
            return Turn(claims[-most] + span - moment, held)
        if held is None:
            schedule = sorted(float(t) for t in row.scheduled or [])[-most:]
            waiting = bool(schedule) and schedule[-1] > moment
            window_taken = len(schedule) >= most and schedule[-most] + span > moment
            if waiting or window_taken or full:
                at = max(
                    moment,
                    schedule[-1] if schedule else moment,
                    schedule[-most] + span if len(schedule) >= most else moment,
                    claims[-most] + span if full else moment,
                )
                row.scheduled = [*schedule, round(at, 6)][-most:]
                row.expires_at = datetime.fromtimestamp(at + span, tz=UTC)
                if per_recipient is not None:
                    _count(rows[recipient_key], per_recipient, recipient_log, at)
                return Turn(at - moment, at)
            row.scheduled = [*schedule, round(moment, 6)][-most:]
        _count(row, per_channel, claims, moment)
    if per_recipient is not None:
        _count(rows[recipient_key], per_recipient, recipient_log, at)
    return Turn(0.0)


def _behind_older(session: Session, rules: ChannelRules, message: Message) -> float:
    """On a channel paced per recipient, a message waits for the older ones still pending to the same
    contact there, so a paced burst arrives in the order it was written (whichever worker wakes first);
    0 when none is waiting. The wait is one pace interval: by then the older one has had its turn."""
    pace = rules.recipient_pace
    if pace is None:
        return 0.0
    older = session.scalar(
        select(Message.id)
        .where(
            Message.contact_id == message.contact_id,
            Message.id < message.id,
            Message.channel_id == message.channel_id,
            Message.direction == Direction.OUTGOING,
            Message.status == DeliveryStatus.PENDING,
        )
        .limit(1)
    )
    return pace.seconds / pace.messages if older is not None else 0.0


def _locked_pace_rows(session: Session, keys: list[str]) -> dict[str, OutboundPace]:
    query = select(OutboundPace).where(OutboundPace.key.in_(keys)).order_by(OutboundPace.key).with_for_update()
    return {row.key: row for row in session.scalars(query)}


def _ensure_pace_rows(session: Session, keys: list[str], now: datetime) -> None:
    """The logs exist before they are locked: two workers creating the same one both succeed."""
    values = [{"key": key, "sent_at": [], "expires_at": now} for key in keys]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(OutboundPace).values(values).on_conflict_do_nothing(index_elements=["key"]))
    else:
        session.execute(sqlite.insert(OutboundPace).values(values).on_conflict_do_nothing(index_elements=["key"]))


def do_prune_paces(session: Session, now: datetime) -> int:
    """Drop pace logs that count nothing any more (customers not written to lately)."""
    result = session.execute(delete(OutboundPace).where(OutboundPace.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


def _attachments(session: Session, message: Message) -> list[dict[str, Any]]:
    """The message's files with where their bytes are (`storage_key`), for adapters that upload them."""
    attachments = [dict(a) for a in message.attachments or []]
    ids = [a["file_id"] for a in attachments if a.get("file_id")]
    if ids:
        rows = session.execute(
            select(StoredFile.id, StoredFile.storage_key).where(
                StoredFile.workspace_id == message.workspace_id, StoredFile.id.in_(ids)
            )
        )
        keys: dict[int, str] = {int(row[0]): str(row[1]) for row in rows}
        for attachment in attachments:
            if attachment.get("file_id") in keys:
                attachment["storage_key"] = keys[attachment["file_id"]]
    return attachments


def _replied_provider_id(session: Session, message: Message) -> str | None:
    """The provider's id of the message this one answers (payload `reply_to_message_id`), when it
    went through the same channel."""
    replied_id = (message.payload or {}).get("reply_to_message_id")
    if not isinstance(replied_id, int):
        return None
    replied = session.get(Message, replied_id)
    if (
        replied is None
        or replied.conversation_id != message.conversation_id
        or replied.channel_id != message.channel_id
    ):
        return None
    return replied.provider_message_id


def process_outbound(
    db: Database, message_id: int, clock: Callable[[], datetime] = utcnow, slot: float | None = None
) -> Outcome:
    """`clock` is when the pace is judged (tests move it instead of sleeping); `slot` is the turn an
    earlier try of this message was given (`Outcome.slot`)."""
    settings = get_settings()
    with db.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.direction != Direction.OUTGOING or message.status != DeliveryStatus.PENDING:
            return Outcome("skipped")
        channel = session.scalar(select(Channel).where(Channel.id == message.channel_id))
        if channel is None or not channel.active:
            advance_message_status(session, message, DeliveryStatus.FAILED, "channel removed or disabled")
            return Outcome("failed", reason="channel removed or disabled")
        recipient_id = str((message.payload or {}).get("recipient_id", ""))
        rules = get_adapter(channel.type).rules
        refused = sms_consent.refusal(session, channel, recipient_id) if rules.keyword_consent else None
        if refused:
            # Before any provider call: the customer asked not to be texted.
            advance_message_status(session, message, DeliveryStatus.FAILED, refused)
            return Outcome("failed", reason=refused)
        behind = _behind_older(session, rules, message)
        if behind:
            return Outcome("retry", retry_in=behind, reason="paced")
        turn = pace_turn(session, rules, channel, recipient_id, clock, held=slot)
        if turn.wait > 0:
            # Not an attempt: the message waits its turn under the provider's pace.
            return Outcome("retry", retry_in=turn.wait, reason="paced", slot=turn.slot)
        message.attempts += 1
        # Restarts the stuck-message clock: a message in backoff is not "stuck".
        message.status_at = utcnow()
        attempt = message.attempts
        if rules.mail_threading and "email_thread" not in (message.payload or {}):
            # Fixed on the first try, so every retry sends the same thread headers.
            message.payload = {
                **(message.payload or {}),
                "email_thread": email_threads.outbound_context(session, channel, message),
            }
        outbound = OutboundMessage(
            message_id=message.id,
            idempotency_key=f"tertulia-msg-{message.id}",
            recipient_id=recipient_id,
            type=message.type,
            text=message.text,
            attachments=_attachments(session, message),
            payload=dict(message.payload or {}),
            reply_to_provider_id=_replied_provider_id(session, message),
        )
        session.expunge(channel)
    adapter = get_adapter(channel.type)
    try:
        result = adapter.send(channel, outbound)
    except TransientError as exc:
        if attempt >= settings.outbox_max_attempts:
            return _fail(db, message_id, f"gave up after {attempt} attempts: {exc.reason}")
        delay = exc.retry_after if exc.retry_after is not None else backoff(attempt, settings.outbox_retry_base_seconds)
        log.info("outbox_transient", message_id=message_id, attempt=attempt, reason=exc.reason, retry_in=delay)
        with db.transaction() as session:
            record_error(session, channel.id, exc.reason, utcnow())
        return Outcome("retry", retry_in=delay, reason=exc.reason)
    except PermanentError as exc:
        return _fail(db, message_id, exc.reason)
    for hook in AFTER_PROVIDER_CALL:
        hook(message_id)
    with db.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            return Outcome("skipped")
        if message.provider_message_id is None:
            if get_adapter(channel.type).rules.echoes:
                _drop_echo_of(session, message, result.provider_message_id)
            message.provider_message_id = result.provider_message_id
        if result.recipient_id and result.recipient_id != recipient_id:
            # A private reply reached the commenter's Messenger id: their later messages are theirs.
            identities.resolve_senders(
                session,
                [(channel.workspace_id, channel.type, identities.Sender(recipient_id, aliases=(result.recipient_id,)))],
            )
        session.flush()
        advance_message_status(session, message, DeliveryStatus.SENT, None)
        if result.status != DeliveryStatus.SENT:
            advance_message_status(session, message, result.status, None)
        if message.channel_id is not None:
            touch_sent(session, message.channel_id, utcnow())
    return Outcome("sent")


def _drop_echo_of(session: Session, message: Message, provider_message_id: str) -> None:
    """The provider's echo of this very message may have been stored first (it arrived before this
    transaction): it is the same message, so the echo goes and ours keeps the provider id."""
    if message.channel_id is None:
        return
    echo = repo.message_by_provider_id(session, message.channel_id, provider_message_id)
    if echo is not None and echo.id != message.id and "echo" in (echo.payload or {}):
        session.delete(echo)
        session.flush()


def _fail(db: Database, message_id: int, reason: str) -> Outcome:
    with db.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is not None:
            advance_message_status(session, message, DeliveryStatus.FAILED, reason)
            if message.channel_id is not None:
                record_error(session, message.channel_id, reason, utcnow())
    log.info("outbox_failed", message_id=message_id, reason=reason)
    return Outcome("failed", reason=reason)


@huey.task(name="conversations.send_message")  # type: ignore[untyped-decorator]
def send_message_task(message_id: int, slot: float | None = None) -> str:
    outcome = process_outbound(task_database(), message_id, slot=slot)
    if outcome.state == "retry" and outcome.slot is not None:
        # Queued for its turn, carrying the slot it holds (a retry would run with the old one).
        send_message_task.schedule(args=(message_id, outcome.slot), delay=outcome.retry_in)
        return "paced"
    if outcome.state == "retry":
        # No delay: re-enqueue directly rather than through the scheduler's timetable.
        raise RetryTask(outcome.reason, delay=outcome.retry_in or None)
    return outcome.state


def enqueue_send(message_id: int) -> None:
    try:
        send_message_task(message_id)
    except Exception as exc:  # the message stays pending; the periodic sweep re-queues it
        log.warning("outbox_enqueue_failed", message_id=message_id, error=str(exc))


def stuck_message_ids(db: Database, limit: int = 500) -> list[int]:
    cutoff = utcnow() - STUCK_AFTER
    with db.transaction(write=False) as session:
        return list(
            session.scalars(
                select(Message.id)
                .where(
                    Message.status == DeliveryStatus.PENDING,
                    Message.direction == Direction.OUTGOING,
                    Message.status_at < cutoff,
                )
                .order_by(Message.id)
                .limit(limit)
            )
        )


@huey.periodic_task(crontab(minute="*"), name="conversations.requeue_stuck_outbound")  # type: ignore[untyped-decorator]
def requeue_stuck_outbound() -> int:
    ids = stuck_message_ids(task_database())
    for message_id in ids:
        enqueue_send(message_id)
    return len(ids)


@huey.periodic_task(crontab(minute="*/10"), name="conversations.prune_paces")  # type: ignore[untyped-decorator]
def prune_paces() -> int:
    with task_database().transaction() as session:
        return do_prune_paces(session, utcnow())


@huey.periodic_task(crontab(minute="17"), name="conversations.sweep_unsent_uploads")  # type: ignore[untyped-decorator]
def sweep_unsent_uploads() -> int:
    with task_database().transaction() as session:
        return do_sweep_unsent_uploads(session, utcnow())


def _queued_message_ids() -> set[int]:
    """Ids of messages whose send task is waiting in the queue or its schedule (retries)."""
    waiting: set[int] = set()
    for task in [*huey.pending(), *huey.scheduled()]:
        if task.name == send_message_task.name and task.args:
            waiting.add(int(task.args[0]))
    return waiting


def requeue_pending_outbound() -> int:
    """Queue every pending outgoing message whose task is not waiting in the queue: its enqueue was
    lost with the process, or a worker took it and died. Without this they waited for the
    15-minute stuck sweep. A message another live worker is sending right now may be queued twice;
    the send carries the same idempotency key, as with the periodic sweep."""
    try:
        waiting = _queued_message_ids()
    except Exception:  # a backend that cannot list its queue: queue them all, sends are idempotent
        waiting = set()
    with task_database().transaction(write=False) as session:
        ids = list(
            session.scalars(
                select(Message.id)
                .where(Message.status == DeliveryStatus.PENDING, Message.direction == Direction.OUTGOING)
                .order_by(Message.id)
            )
        )
    requeued = [message_id for message_id in ids if message_id not in waiting]
    for message_id in requeued:
        enqueue_send(message_id)
    return len(requeued)
