"""Provider callbacks: verify, store, answer; parse and write later, in a queued task.

    GET|POST /webhooks/{channel key}            (the URL providers are configured with today)
    GET|POST /channels/{channel key}/callback   (the same endpoint under the channel's name)

While the provider waits, only the adapter's `verify_webhook` runs, over the raw bytes (signatures
are over the exact body). A request that fails it is answered 403 and stored nowhere. A handshake (a
GET such as Meta's hub.challenge) is answered at once and stored nowhere either. Anything else
verified is stored as an `InboundCallback` row and answered 200 once that row is committed; the
callbacks arriving together share one transaction (`CallbackWriter`) and one queued task carrying
their ids, queued after the commit.

The task (`process_callbacks`) takes the oldest waiting rows, its own among them, parses them with
their adapters and writes every message through `do_receive_many`, the batched writer the widget
uses, in one transaction, then deletes the rows. Inbound messages are deduplicated by provider id
and statuses only move forward, so a provider retrying a callback, or a row processed twice by
racing tasks, changes nothing. One bad message is logged and skipped (failing the whole callback
would make the provider retry it forever); a body the adapter cannot parse is logged and dropped. If
a batch fails, its callbacks are retried one transaction each; a callback that still fails is kept
and retried by the periodic sweep (which also finds rows whose task was lost), and dropped, logged,
after MAX_ATTEMPTS failures.
"""

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import anyio
import structlog
from fastapi import APIRouter, Request, Response
from huey import crontab
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tertulia.channels import repository as channels_repo
from tertulia.channels.http import RawBodyRoute
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage, ParsedWebhook, WebhookRejected, WebhookRequest
from tertulia.channels.registry import get_adapter
from tertulia.conversations.inbound import check_inbound, do_receive_many
from tertulia.conversations.models import InboundCallback
from tertulia.conversations.status import do_apply_status
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError, NotFound, PermissionDenied
from tertulia.kit.queue import huey, task_database
from tertulia.kit.text import replace_unsafe_characters

log = structlog.get_logger()
router = APIRouter(tags=["channel callbacks"], route_class=RawBodyRoute)

MAX_BATCH = 64
# Callbacks written per transaction by the task. Smaller than what the endpoint stores at once: on
# SQLite the callback writer waits for the write lock while a batch is written, so a batch's length is
# what an acknowledgement can wait behind.
WRITE_BATCH = 16
NUDGE_INTERVAL = 0.05  # seconds between two tasks queued by one callback writer
_processing = threading.Lock()
MAX_ATTEMPTS = 10
LOST_AFTER = timedelta(minutes=1)


# ----- the endpoint ---------------------------------------------------------------------------


def _verify(channel: Channel | None, incoming: WebhookRequest) -> Channel:
    if channel is None:
        raise NotFound("No such channel.")
    try:
        get_adapter(channel.type).verify_webhook(channel, incoming)
    except WebhookRejected as exc:
        raise PermissionDenied("Webhook verification failed.", code="webhook_rejected") from exc
    return channel


def answer_handshake(db: Database, key: str, incoming: WebhookRequest) -> Response:
    with db.transaction(write=False) as session:
        channel = _verify(channels_repo.channel_by_key(session, key), incoming)
        parsed = get_adapter(channel.type).parse_webhook(channel, incoming)
    return Response(parsed.reply or "", media_type="text/plain")


@dataclass
class _Pending:
    key: str
    incoming: WebhookRequest
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[None]"


_STOP = object()


class CallbackWriter:
    """Verifies and stores callbacks on one thread, many to a transaction ("group commit").

    At hundreds of callbacks a second, one short write transaction and one queued task per
    callback would make every request wait its turn for SQLite's single write lock; batched, a
    burst costs one transaction per batch and a task every NUDGE_INTERVAL. Each request waits for
    its own batch's commit before it is answered, so a 200 always means "stored".
    """

    def __init__(self, database: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.database = database
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def accept(self, key: str, incoming: WebhookRequest) -> None:
        """Returns once the callback is stored; raises NotFound or PermissionDenied (stored nowhere)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callback-writer", daemon=True)
                self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(key, incoming, loop, future))
        await future

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(_STOP)
                thread.join(timeout=30)

    def _run(self) -> None:
        # Ids stored since the last task was queued. One task per NUDGE_INTERVAL at most: the task
        # writes every waiting row, and each enqueue is a synced write to the queue's storage that
        # the next batch of answers would wait behind.
        unqueued: list[int] = []
        last_nudge = 0.0
        while True:
            try:
                first = self._queue.get(timeout=NUDGE_INTERVAL if unqueued else None)
            except queue.Empty:
                first = None
            batch = [] if first is None else [first]
            while batch and len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending = [item for item in batch if isinstance(item, _Pending)]
            stopping = len(pending) < len(batch)
            if pending:
                try:
                    unqueued.extend(self._store(pending))
                except BaseException as exc:  # the thread must survive anything one batch does
                    log.exception("callback_writer_failed", error=str(exc))
                    for item in pending:
                        _settle(item, exc)
            if unqueued and (stopping or time.monotonic() - last_nudge >= NUDGE_INTERVAL):
                enqueue_callbacks(unqueued)
                unqueued, last_nudge = [], time.monotonic()
            if stopping:
                return

    def _store(self, batch: list[_Pending]) -> list[int]:
        """Stores the verified callbacks of `batch` in one transaction and answers every request of
        it; the stored rows' ids."""
        accepted: list[_Pending] = []
        with self.database.transaction() as session:
            rows: list[InboundCallback] = []
            channels: dict[str, Channel | None] = {}
            for item in batch:
                try:
                    if item.key not in channels:
                        channels[item.key] = channels_repo.channel_by_key(session, item.key)
                    channel = _verify(channels[item.key], item.incoming)
                except DomainError as exc:
                    _settle(item, exc)
                    continue
                rows.append(_row(channel, item.incoming))
                accepted.append(item)
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows]
        # Answered before the task is queued: the rows are what makes the 200 safe (a lost task is
        # swept up).
        for item in accepted:
            _settle(item, None)
        return ids


def _row(channel: Channel, incoming: WebhookRequest) -> InboundCallback:
    return InboundCallback(
        workspace_id=channel.workspace_id,
        channel_id=channel.id,
        method=incoming.method,
        url=incoming.url,
        headers=dict(incoming.headers),
        query=dict(incoming.query),
        body=incoming.body,
        received_at=utcnow(),
        attempts=0,
    )


def _settle(item: _Pending, exc: BaseException | None) -> None:
    def apply() -> None:
        if item.future.done():
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(None)

    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody is waiting
        item.loop.call_soon_threadsafe(apply)


async def _callback(key: str, request: Request) -> Response:
    incoming = WebhookRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        body=await request.body(),
    )
    db: Database = request.app.state.db
    if incoming.method == "GET":
        return await anyio.to_thread.run_sync(answer_handshake, db, key, incoming)
    writer: CallbackWriter = request.app.state.callback_writer
    await writer.accept(key, incoming)
    return Response(status_code=200)


@router.api_route("/webhooks/{key}", methods=["GET", "POST"], include_in_schema=False)
async def provider_webhook(key: str, request: Request) -> Response:
    return await _callback(key, request)


@router.api_route("/channels/{key}/callback", methods=["GET", "POST"], include_in_schema=False)
async def channel_callback(key: str, request: Request) -> Response:
    return await _callback(key, request)


# ----- the task -------------------------------------------------------------------------------


def _request(row: InboundCallback) -> WebhookRequest:
    return WebhookRequest(method=row.method, url=row.url, headers=row.headers, query=row.query, body=row.body)


def _parse(channel: Channel | None, row: InboundCallback) -> ParsedWebhook:
    """What the callback carries; nothing for a channel since removed or a body the adapter refuses."""
    if channel is None or not channel.active:
        log.warning("callback_dropped", callback_id=row.id, reason="channel removed or disabled")
        return ParsedWebhook()
    try:
        return _made_safe(get_adapter(channel.type).parse_webhook(channel, _request(row)))
    except (ValueError, LookupError, WebhookRejected) as exc:
        log.warning("callback_unparsable", callback_id=row.id, channel_id=channel.id, reason=str(exc))
        return ParsedWebhook()


def _made_safe(parsed: ParsedWebhook) -> ParsedWebhook:
    """What a provider sent, with NUL and unpaired surrogates replaced (kit.text's rule for text that
    was already accepted): a customer's message is never lost over them, and both databases store
    the same text."""
    messages = [
        replace(message, **{name: replace_unsafe_characters(getattr(message, name)) for name in _MESSAGE_TEXT})
        for message in parsed.messages
    ]
    statuses = [replace(status, reason=replace_unsafe_characters(status.reason)) for status in parsed.statuses]
    return replace(parsed, messages=messages, statuses=statuses)


_MESSAGE_TEXT = (
    "sender_id",
    "provider_message_id",
    "text",
    "attachments",
    "payload",
    "display_name",
    "first_name",
    "last_name",
    "email",
    "phone",
)


def _acceptable(channel: Channel, message: InboundMessage) -> bool:
    try:
        check_inbound(message)
    except DomainError as exc:
        log.warning("webhook_message_skipped", channel_id=channel.id, reason=exc.message)
        return False
    return True


def _write(session: Session, rows: Sequence[InboundCallback]) -> None:
    channels = {row.channel_id: session.get(Channel, row.channel_id) for row in rows}
    inbound: list[tuple[Channel, InboundMessage]] = []
    statuses: list[tuple[Channel, ParsedWebhook]] = []
    for row in rows:
        channel = channels[row.channel_id]
        parsed = _parse(channel, row)
        if channel is None:
            continue
        inbound.extend((channel, m) for m in parsed.messages if _acceptable(channel, m))
        statuses.append((channel, parsed))
    if inbound:
        do_receive_many(session, inbound)
    for channel, parsed in statuses:
        for status in parsed.statuses:
            do_apply_status(session, channel, status.provider_message_id, status.status, status.reason)
    session.execute(delete(InboundCallback).where(InboundCallback.id.in_([row.id for row in rows])))


def _claim(
    session: Session, *, ids: Sequence[int] | None = None, before: datetime | None = None
) -> list[InboundCallback]:
    """Waiting callbacks, oldest first, at most WRITE_BATCH; on PostgreSQL a row another task is
    writing is skipped, not waited for (SQLite runs one write transaction at a time anyway)."""
    query = select(InboundCallback).order_by(InboundCallback.id).limit(WRITE_BATCH)
    if ids is not None:
        query = query.where(InboundCallback.id.in_(list(ids)))
    if before is not None:
        query = query.where(InboundCallback.received_at < before)
    return list(session.scalars(query.with_for_update(skip_locked=True)))


def process_callbacks(db: Database, *, ids: Sequence[int] | None = None, older_than: timedelta | None = None) -> int:
    """Write waiting callbacks (these `ids`, or the oldest) in one transaction; returns how many."""
    before = utcnow() - older_than if older_than is not None else None
    claimed: list[int] = []
    try:
        with db.transaction() as session:
            rows = _claim(session, ids=ids, before=before)
            claimed = [row.id for row in rows]
            _write(session, rows)
    except Exception as exc:
        log.warning("callback_batch_failed", callbacks=len(claimed), error=str(exc))
        for callback_id in claimed:
            _write_alone(db, callback_id)
    return len(claimed)


def _write_alone(db: Database, callback_id: int) -> None:
    try:
        with db.transaction() as session:
            _write(session, _claim(session, ids=[callback_id]))
    except Exception as exc:
        log.exception("callback_failed", callback_id=callback_id, error=str(exc))
        with db.transaction() as session:
            session.execute(
                update(InboundCallback)
                .where(InboundCallback.id == callback_id)
                .values(attempts=InboundCallback.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            # Given up on: logged above each time, so the body can be found in the logs' context.
            session.execute(
                delete(InboundCallback).where(
                    InboundCallback.id == callback_id, InboundCallback.attempts >= MAX_ATTEMPTS
                )
            )


@huey.task(name="conversations.process_callbacks")  # type: ignore[untyped-decorator]
def process_callbacks_task(callback_ids: list[int]) -> None:
    """Writes the oldest waiting callbacks, a batch at a time, until fewer than a full batch was left:
    `callback_ids` among them. Under a burst the first tasks write many batches and the ones
    behind them find their rows already written, so the burst costs few tasks. Returns nothing: a
    result would be one more synced write to the queue's storage per task."""
    db = task_database()
    # One writer of callbacks per process: consumer threads racing for the same rows (and, on
    # SQLite, for the one write lock the callback writer needs to answer providers) gain nothing.
    with _processing:
        handled = total = process_callbacks(db)
        while handled == WRITE_BATCH:
            handled = process_callbacks(db)
            total += handled
    log.debug("callbacks_written", queued_with=len(callback_ids), written=total)


def enqueue_callbacks(callback_ids: list[int]) -> None:
    try:
        process_callbacks_task(callback_ids)
    except Exception as exc:  # the rows stay; the periodic sweep picks them up
        log.warning("callback_enqueue_failed", callbacks=len(callback_ids), error=str(exc))


@huey.periodic_task(crontab(minute="*"), name="conversations.sweep_callbacks")  # type: ignore[untyped-decorator]
def sweep_callbacks() -> int:
    """Callbacks whose task was lost (or failed): retried a batch at a time until none is left."""
    handled = total = process_callbacks(task_database(), older_than=LOST_AFTER)
    while handled == WRITE_BATCH:
        handled = process_callbacks(task_database(), older_than=LOST_AFTER)
        total += handled
    return total
