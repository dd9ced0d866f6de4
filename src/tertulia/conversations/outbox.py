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

A backlog (found at start-up or by the sweep, or a broadcast's) goes through `send_messages_task`
instead: the same steps for a batch of messages at once (`process_outbound_batch`).
"""

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from huey import crontab
from huey.exceptions import RetryTask
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tertulia.channels.health import record_failure, touch_sent
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelError,
    ChannelRules,
    DeliveryStatus,
    OutboundMessage,
    Pace,
    PermanentError,
    SendResult,
    TransientError,
    channel_pace,
)
from tertulia.channels.registry import get_adapter
from tertulia.contacts import identities
from tertulia.conversations import email_threads, sms_consent
from tertulia.conversations import repository as repo
from tertulia.conversations.files import do_sweep_unsent_uploads
from tertulia.conversations.models import Direction, Message, OutboundPace, StoredFile
from tertulia.conversations.status import advance_many, advance_message_status
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
    state: str  # "sent", "skipped", "failed", "retry"; "later": left for a later batch (its pace)
    retry_in: float | None = None
    reason: str | None = None
    slot: float | None = None  # paced: the turn it holds, given back when it is tried again
    counted_at: float | None = None  # sent in a batch on a paced channel: when the pace counted it


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
    rows: dict[str, OutboundPace] | None = None,
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
    counts its send when it really goes, not when it started waiting. `rows`: the records, already
    locked by the caller (`lock_paces`), when it judges many messages in one transaction."""
    per_channel = channel_pace(rules, channel)
    per_recipient = rules.recipient_pace
    channel_key = _pace_key("c", channel.key)
    recipient_key = _pace_key("r", channel.key, recipient_id)
    keys = pace_keys(rules, channel, recipient_id)
    if not keys:
        return Turn(0.0)
    if rows is None:
        rows = lock_paces(session, keys, clock())
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


def pace_keys(rules: ChannelRules, channel: Channel, recipient_id: str) -> list[str]:
    """The pace records a send to `recipient_id` on `channel` counts in."""
    keys = []
    if channel_pace(rules, channel) is not None:
        keys.append(_pace_key("c", channel.key))
    if rules.recipient_pace is not None:
        keys.append(_pace_key("r", channel.key, recipient_id))
    return keys


def lock_paces(session: Session, keys: Iterable[str], now: datetime) -> dict[str, OutboundPace]:
    """The pace records under `keys`, created when missing, locked in key order."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = _locked_pace_rows(session, wanted)
    if len(rows) < len(wanted):  # a first send on this channel or to a recipient lately
        _ensure_pace_rows(session, [key for key in wanted if key not in rows], now)
        rows = _locked_pace_rows(session, wanted)
    return rows


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
        outbound = _outbound(session, channel, rules, message, recipient_id)
        session.expunge(channel)
    adapter = get_adapter(channel.type)
    try:
        result = adapter.send(channel, outbound)
    except TransientError as exc:
        if attempt >= settings.outbox_max_attempts:
            return _fail(db, message_id, f"gave up after {attempt} attempts: {exc.reason}", exc)
        delay = exc.retry_after if exc.retry_after is not None else backoff(attempt, settings.outbox_retry_base_seconds)
        log.info("outbox_transient", message_id=message_id, attempt=attempt, reason=exc.reason, retry_in=delay)
        if exc.channel_level:
            with db.transaction() as session:
                record_failure(session, channel.id, exc, utcnow())
        return Outcome("retry", retry_in=delay, reason=exc.reason)
    except PermanentError as exc:
        return _fail(db, message_id, exc.reason, exc)
    for hook in AFTER_PROVIDER_CALL:
        hook(message_id)
    with db.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            return Outcome("skipped")
        _record_sent(session, channel, recipient_id, message, result)
        session.flush()
        advance_message_status(session, message, DeliveryStatus.SENT, None)
        if result.status != DeliveryStatus.SENT:
            advance_message_status(session, message, result.status, None)
        if message.channel_id is not None:
            touch_sent(session, message.channel_id, utcnow())
    return Outcome("sent")


# Messages a batch task claims and sends together, and how many of their provider calls overlap.
SEND_BATCH = 100
SEND_THREADS = 16
# How far ahead a batch spaces the sends of a paced channel (the rest go in a later batch), and the
# earliest it counts one: a send made later than counted crowds the next ones into the provider's
# window, and the claim's commit comes first.
BATCH_HORIZON = 1.0
BATCH_LEAD = 0.15
# A spaced send that could only be made this much later than counted is not made (it would crowd the
# next ones into the provider's window): it goes in a later batch, its count left standing. With
# sends spaced a window's worth per HEADROOM-longer window, a send up to 0.04 s late still leaves at
# most the pace in any window of the provider's; the rest of that margin is the request's own jitter.
BATCH_LATE = 0.035
_senders = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="outbox-send")


@dataclass(frozen=True)
class _Claim:
    channel: Channel
    outbound: OutboundMessage
    attempt: int
    at: float | None = None  # when the send is counted (seconds since the epoch): it is not made sooner
    due: float | None = None  # the same moment on this process's monotonic clock (the app's may be moved)


def spacing_of(pace: Pace) -> float:
    """The gap between a batch's spaced sends: a window's worth per window, and a hair more so that
    the stored times (rounded to the microsecond) never put one window's first and the next window's
    first inside one window."""
    return window(pace) / pace.messages + 1e-5


def _first_free(row: OutboundPace | None, moment: float, spacing: float) -> float:
    """When the next spaced send on a channel may be counted: after the latest one counted (another
    batch may have spaced its own into the coming second)."""
    latest = max((float(t) for t in (row.sent_at if row is not None else None) or []), default=moment - spacing)
    return max(moment + BATCH_LEAD, latest + spacing)


@dataclass(frozen=True)
class _Result:
    claim: _Claim
    sent: SendResult | None = None
    error: TransientError | PermanentError | None = None
    late: bool = False


def process_outbound_batch(
    db: Database, message_ids: Sequence[int], clock: Callable[[], datetime] = utcnow
) -> dict[int, Outcome]:
    """`process_outbound` for many messages (a broadcast, a backlog): one transaction claims every
    one the paces allow, their provider calls overlap, one transaction records the results. A single
    message's path costs three transactions and a dozen round trips; a backlog drained that way was
    bound by the database's latency, not by the provider's pace. The claim is the same as one by
    one: the same checks in the same order, each message judged under the paces as the ones before
    it in the batch left them, and locked rows skipped (another worker holds them). Messages that
    must wait get their turn through `send_message_task`, as they would alone."""
    settings = get_settings()
    outcomes: dict[int, Outcome] = {}
    claims: list[_Claim] = []
    with db.transaction() as session:
        query = (
            select(Message)
            .where(
                Message.id.in_(sorted(set(message_ids))),
                Message.direction == Direction.OUTGOING,
                Message.status == DeliveryStatus.PENDING,
            )
            .order_by(Message.id)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        messages = list(session.scalars(query))
        channel_ids = {message.channel_id for message in messages if message.channel_id is not None}
        channels = {c.id: c for c in session.scalars(select(Channel).where(Channel.id.in_(channel_ids)))}
        recipients = {message.id: str((message.payload or {}).get("recipient_id", "")) for message in messages}
        keys = [
            key
            for message in messages
            if (channel := channels.get(message.channel_id or 0)) is not None and channel.active
            for key in pace_keys(get_adapter(channel.type).rules, channel, recipients[message.id])
        ]
        paces = lock_paces(session, keys, clock())
        moment = clock().timestamp()
        moment_here = time.monotonic()
        next_send: dict[str, float] = {}  # per paced channel: when its next send is spaced to
        waiting = _older_pending(session, messages)
        claimed_ids: set[int] = set()
        failed: dict[str | None, list[Message]] = {}
        for message in messages:
            channel = channels.get(message.channel_id or 0)
            if channel is None or not channel.active:
                failed.setdefault("channel removed or disabled", []).append(message)
                continue
            rules = get_adapter(channel.type).rules
            recipient_id = recipients[message.id]
            refused = sms_consent.refusal(session, channel, recipient_id) if rules.keyword_consent else None
            if refused:
                failed.setdefault(refused, []).append(message)
                continue
            older = waiting.get((message.contact_id, message.channel_id), set())
            if rules.recipient_pace is not None and any(i < message.id and i not in claimed_ids for i in older):
                apart = rules.recipient_pace.seconds / rules.recipient_pace.messages
                outcomes[message.id] = Outcome("retry", retry_in=apart, reason="paced")
                continue
            # A paced channel's sends are spaced evenly (a window's worth at once reached the provider
            # as a burst whose tail ran into the next window) and each is counted when it will be made.
            pace = channel_pace(rules, channel)
            at = moment
            if pace is not None:
                spacing = spacing_of(pace)
                at = next_send.get(channel.key) or _first_free(paces.get(_pace_key("c", channel.key)), moment, spacing)
                if at - moment > BATCH_HORIZON:
                    outcomes[message.id] = Outcome("later", retry_in=at - moment - BATCH_HORIZON / 2)
                    continue
            turn = pace_turn(session, rules, channel, recipient_id, _clock_at(at), rows=paces)
            if turn.wait > 0:
                wait = turn.wait + at - moment
                outcomes[message.id] = Outcome("retry", retry_in=wait, reason="paced", slot=turn.slot)
                continue
            if pace is not None:
                next_send[channel.key] = at + spacing_of(pace)
            message.attempts += 1
            message.status_at = utcnow()
            claimed_ids.add(message.id)
            outbound = _outbound(session, channel, rules, message, recipient_id)
            if pace is not None:
                claims.append(_Claim(channel, outbound, message.attempts, at, moment_here + at - moment))
            else:
                claims.append(_Claim(channel, outbound, message.attempts))
        for reason, refused_messages in failed.items():
            advance_many(session, refused_messages, DeliveryStatus.FAILED, reason)
            outcomes.update({m.id: Outcome("failed", reason=reason) for m in refused_messages})
        for channel in channels.values():
            session.expunge(channel)  # used after the commit, by the senders and the record
    results = _dispatch(claims)
    for result in results:
        for hook in AFTER_PROVIDER_CALL:
            if result.sent is not None:
                hook(result.claim.outbound.message_id)
    outcomes.update(_record_batch(db, results, settings.outbox_max_attempts, settings.outbox_retry_base_seconds))
    return outcomes


def _clock_at(moment: float) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(moment, tz=UTC)


def _outbound(
    session: Session, channel: Channel, rules: ChannelRules, message: Message, recipient_id: str
) -> OutboundMessage:
    if rules.mail_threading and "email_thread" not in (message.payload or {}):
        # Fixed on the first try, so every retry sends the same thread headers.
        message.payload = {
            **(message.payload or {}),
            "email_thread": email_threads.outbound_context(session, channel, message),
        }
    return OutboundMessage(
        message_id=message.id,
        idempotency_key=f"tertulia-msg-{message.id}",
        recipient_id=recipient_id,
        type=message.type,
        text=message.text,
        attachments=_attachments(session, message),
        payload=dict(message.payload or {}),
        reply_to_provider_id=_replied_provider_id(session, message),
    )


def _older_pending(session: Session, messages: Sequence[Message]) -> dict[tuple[int, int | None], set[int]]:
    """For channels paced per recipient: the pending outgoing messages to each (contact, channel) of
    the batch, by id, to keep a recipient's messages in the order they were written."""
    pairs = {(message.contact_id, message.channel_id) for message in messages if message.channel_id is not None}
    if not pairs:
        return {}
    rows = session.execute(
        select(Message.id, Message.contact_id, Message.channel_id).where(
            Message.contact_id.in_({contact for contact, _ in pairs}),
            Message.channel_id.in_({channel for _, channel in pairs}),
            Message.direction == Direction.OUTGOING,
            Message.status == DeliveryStatus.PENDING,
        )
    )
    found: dict[tuple[int, int | None], set[int]] = {}
    for message_id, contact_id, channel_id in rows:
        if (contact_id, channel_id) in pairs:
            found.setdefault((contact_id, channel_id), set()).add(int(message_id))
    return found


def _dispatch(claims: Sequence[_Claim]) -> list[_Result]:
    """Each claim's provider call, made at its counted moment (this thread waits for it; the calls
    overlap on the sender threads), or not at all when that moment has passed."""
    pending: list[_Result | Future[_Result]] = []
    for claim in sorted(claims, key=lambda c: c.due or 0.0):
        if claim.due is not None:
            now = time.monotonic()
            if now > claim.due + BATCH_LATE:
                pending.append(_Result(claim, late=True))
                continue
            time.sleep(max(0.0, claim.due - now))
        pending.append(_senders.submit(_send_one, claim))
    return [item if isinstance(item, _Result) else item.result() for item in pending]


def _send_one(claim: _Claim) -> _Result:
    try:
        return _Result(claim, sent=get_adapter(claim.channel.type).send(claim.channel, claim.outbound))
    except (TransientError, PermanentError) as exc:
        return _Result(claim, error=exc)
    except Exception as exc:  # an adapter's bug must not lose the batch's other results
        log.exception("outbox_send_crashed", message_id=claim.outbound.message_id)
        return _Result(claim, error=TransientError(f"unexpected error: {type(exc).__name__}"))


def _record_batch(db: Database, results: Sequence[_Result], max_attempts: int, retry_base: float) -> dict[int, Outcome]:
    if not results:
        return {}
    outcomes: dict[int, Outcome] = {}
    now = utcnow()
    with db.transaction() as session:
        ids = [result.claim.outbound.message_id for result in results]
        messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)).with_for_update())}
        sent: dict[DeliveryStatus, list[Message]] = {}
        failed: dict[str, list[Message]] = {}
        # The channels that failed themselves (not one message's refusal): the last error of each.
        errors: dict[int, tuple[ChannelError, str]] = {}
        for result in results:
            claim = result.claim
            message = messages.get(claim.outbound.message_id)
            if message is None:
                outcomes[claim.outbound.message_id] = Outcome("skipped")
                continue
            if result.late:
                message.attempts = max(0, message.attempts - 1)  # not tried: no attempt
                outcomes[message.id] = Outcome("later", retry_in=0.0)
                continue
            if result.sent is not None:
                _record_sent(session, claim.channel, claim.outbound.recipient_id, message, result.sent)
                sent.setdefault(DeliveryStatus.SENT, []).append(message)
                if result.sent.status != DeliveryStatus.SENT:
                    sent.setdefault(result.sent.status, []).append(message)
                outcomes[message.id] = Outcome("sent", counted_at=claim.at)
                continue
            error = result.error
            assert error is not None
            if isinstance(error, TransientError) and claim.attempt < max_attempts:
                delay = error.retry_after if error.retry_after is not None else backoff(claim.attempt, retry_base)
                outcomes[message.id] = Outcome("retry", retry_in=delay, reason=error.reason)
                if error.channel_level:
                    errors[claim.channel.id] = (error, error.reason)
                continue
            reason = (
                error.reason
                if isinstance(error, PermanentError)
                else f"gave up after {claim.attempt} attempts: {error.reason}"
            )
            failed.setdefault(reason, []).append(message)
            if error.channel_level:
                errors[claim.channel.id] = (error, reason)
            outcomes[message.id] = Outcome("failed", reason=reason)
        session.flush()
        for status, moved in sent.items():
            advance_many(session, moved, status, None)
        for reason, failures in failed.items():
            advance_many(session, failures, DeliveryStatus.FAILED, reason)
        for channel_id in {r.claim.channel.id for r in results if r.sent is not None}:
            touch_sent(session, channel_id, now)
        for channel_id, (failure, reason) in errors.items():
            record_failure(session, channel_id, failure, now, reason)
    return outcomes


def _record_sent(session: Session, channel: Channel, recipient_id: str, message: Message, result: SendResult) -> None:
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


def _drop_echo_of(session: Session, message: Message, provider_message_id: str) -> None:
    """The provider's echo of this very message may have been stored first (it arrived before this
    transaction): it is the same message, so the echo goes and ours keeps the provider id."""
    if message.channel_id is None:
        return
    echo = repo.message_by_provider_id(session, message.channel_id, provider_message_id)
    if echo is not None and echo.id != message.id and "echo" in (echo.payload or {}):
        session.delete(echo)
        session.flush()


def _fail(db: Database, message_id: int, reason: str, error: ChannelError) -> Outcome:
    with db.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is not None:
            advance_message_status(session, message, DeliveryStatus.FAILED, reason)
            if message.channel_id is not None:
                # The channel is in error only when it failed itself, not when one recipient was refused.
                record_failure(session, message.channel_id, error, utcnow(), reason)
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


@huey.task(name="conversations.send_messages")  # type: ignore[untyped-decorator]
def send_messages_task(message_ids: list[int]) -> dict[str, int]:
    outcomes = process_outbound_batch(task_database(), message_ids)
    later = sorted(message_id for message_id, outcome in outcomes.items() if outcome.state == "later")
    if later:
        delay = min(outcomes[message_id].retry_in or 0.0 for message_id in later)
        send_messages_task.schedule(args=(later,), delay=delay)
    for message_id, outcome in outcomes.items():
        if outcome.state == "retry":
            # Each waits its own turn, or its backoff, alone.
            send_message_task.schedule(args=(message_id, outcome.slot), delay=outcome.retry_in or 0)
    tally: dict[str, int] = {}
    for outcome in outcomes.values():
        tally[outcome.state] = tally.get(outcome.state, 0) + 1
    return tally


def enqueue_send_many(message_ids: Sequence[int]) -> None:
    """Queue many messages' delivery in batches (a broadcast, a backlog found at start-up)."""
    ordered = sorted(message_ids)
    for start in range(0, len(ordered), SEND_BATCH):
        chunk = ordered[start : start + SEND_BATCH]
        try:
            send_messages_task(chunk)
        except Exception as exc:  # they stay pending; the periodic sweep re-queues them
            log.warning("outbox_enqueue_failed", message_ids=chunk, error=str(exc))


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
    enqueue_send_many(ids)
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
        elif task.name == send_messages_task.name and task.args:
            waiting.update(int(message_id) for message_id in task.args[0])
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
    enqueue_send_many(requeued)
    return len(requeued)
