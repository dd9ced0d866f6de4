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
a second per chat) has its messages wait their turn: the task is queued again for when the pace
allows, without counting an attempt (counters in memory, or in Redis when TERTULIA_REALTIME_URL is
redis://, so every worker shares them). Each send records the channel's health (channels/health.py):
the last message the provider accepted, or the last error. `requeue_stuck_outbound` (periodic)
re-queues pending messages whose task was lost (a worker killed mid-task), so no message is lost
either.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import structlog
from huey import crontab
from huey.exceptions import RetryTask
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.health import record_error, touch_sent
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    DeliveryStatus,
    OutboundMessage,
    PermanentError,
    TransientError,
)
from tertulia.channels.registry import get_adapter
from tertulia.contacts import identities
from tertulia.conversations import repository as repo
from tertulia.conversations.files import do_sweep_unsent_uploads
from tertulia.conversations.models import Direction, Message, StoredFile
from tertulia.conversations.status import advance_message_status
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.queue import huey, task_database
from tertulia.kit.ratelimit import RateLimiter, make_rate_limiter
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


def backoff(attempt: int, base: float) -> float:
    return float(min(MAX_BACKOFF_SECONDS, base * (2 ** max(0, attempt - 1))))


@cache
def _pacer() -> RateLimiter:
    return make_rate_limiter(get_settings().realtime_url)


def pace_wait(rules: ChannelRules, channel: Channel, recipient_id: str) -> float:
    """Seconds to wait before this message may go out under the channel's pace (0: now). Keyed on the
    channel's key, which no other channel ever has."""
    waits = []
    if rules.per_channel_per_second:
        waits.append(_pacer().hit(f"pace:{channel.key}", rules.per_channel_per_second, 1))
    if rules.per_recipient_per_second and not any(waits):
        waits.append(_pacer().hit(f"pace:{channel.key}:{recipient_id}", rules.per_recipient_per_second, 1))
    return float(max(waits, default=0))


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


def process_outbound(db: Database, message_id: int) -> Outcome:
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
        wait = pace_wait(get_adapter(channel.type).rules, channel, recipient_id)
        if wait:
            # Not an attempt: the message waits its turn under the provider's pace.
            return Outcome("retry", retry_in=wait, reason="paced")
        message.attempts += 1
        # Restarts the stuck-message clock: a message in backoff is not "stuck".
        message.status_at = utcnow()
        attempt = message.attempts
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
def send_message_task(message_id: int) -> str:
    outcome = process_outbound(task_database(), message_id)
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
