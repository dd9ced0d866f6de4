"""Provider callbacks: verify, store, answer; parse and write later, in a queued task.

    GET|POST /webhooks/{channel key}            (the URL providers are configured with today)
    GET|POST /channels/{channel key}/callback   (the same endpoint under the channel's name)

While the provider waits, only the adapter's `verify_webhook` runs, over the raw bytes (signatures
are over the exact body). A request that fails it is answered 403 and stored nowhere. A handshake (a
GET such as Meta's hub.challenge) is answered at once and stored nowhere either. Anything else
verified is stored in the `CallbackSpool` and answered 200 once that row is committed; the
callbacks arriving together share one transaction (`CallbackWriter`) and one queued task. The POSTs
are answered by `CallbackFrontDoor` before the app's routing (see its docstring); the routes below
serve the GET handshakes.

The spool is the `inbound_callbacks` table. On PostgreSQL it is the database's own; on SQLite it is a
file of its own beside the database: SQLite has one write lock per file, and an acknowledgement must
not wait behind the transaction writing messages (nor, with a separate `tertulia worker`, behind
another process's lock, which SQLite waits for by sleeping).

The task (`process_callbacks`) claims the oldest waiting rows for a lease (one short transaction on
the spool), parses them with their adapters and writes every message through `do_receive_many`, the
batched writer the widget uses, in one transaction of the database, then deletes the rows from the
spool. Inbound messages are deduplicated by provider id and statuses only move forward, so a row
written twice (its task died between the write and the delete, or its lease ran out) changes
nothing. One bad message is logged and skipped (failing the whole callback would make the provider
retry it forever); a body the adapter cannot parse is logged and dropped. If a batch fails, its
callbacks are retried one transaction each; a callback that still fails keeps its lease and is
claimed again by the periodic sweep once the lease has run out (which also finds rows whose task
was lost), and dropped, logged, after MAX_ATTEMPTS claims.

Each callback written is a sign of life of its channel (channels/health.py), at the time it arrived,
except one reporting a failed status whose error is the channel's own (an account locked, a token
revoked: `StatusUpdate.error`): that one is recorded as the channel's failure at that time instead,
after the batch's signs of life, so the newer of the two decides the channel's state.
"""

import asyncio
import contextlib
import functools
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio
import psycopg
import structlog
from fastapi import APIRouter, Request, Response
from huey import crontab
from sqlalchemy import Column, Connection, MetaData, Row, Table, delete, func, insert, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from tertulia.channels import repository as channels_repo
from tertulia.channels.health import record_failure, status_failure, touch_callback
from tertulia.channels.http import RawBodyRoute, domain_error_response
from tertulia.channels.message_templates import do_apply_quality_changes, do_apply_template_changes
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    CallbackAnswer,
    ChannelError,
    InboundMessage,
    MediaSource,
    ParsedWebhook,
    StatusUpdate,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.channels.registry import get_adapter
from tertulia.channels.tasks import enqueue_template_sync
from tertulia.conversations import received_files, sms_consent, sms_parts
from tertulia.conversations import repository as repo
from tertulia.conversations.inbound import check_inbound, do_apply_edits, do_receive_many, do_record_echoes
from tertulia.conversations.models import InboundCallback
from tertulia.conversations.status import do_apply_statuses
from tertulia.kit.clock import utcnow
from tertulia.kit.db import WRITE_OPTION, Database, on_commit, sidecar_url
from tertulia.kit.errors import DomainError, NotFound, PermissionDenied
from tertulia.kit.futures import answer_from_thread
from tertulia.kit.http import check_request_text
from tertulia.kit.queue import huey, task_database
from tertulia.kit.text import replace_unsafe_characters

log = structlog.get_logger()
router = APIRouter(tags=["channel callbacks"], route_class=RawBodyRoute)

MAX_BATCH = 64
# Callbacks written per transaction by the task. Smaller than what the endpoint stores at once: on
# SQLite the callback writer waits for the write lock while a batch is written, so a batch's length is
# what an acknowledgement can wait behind.
WRITE_BATCH = 16
# On PostgreSQL nothing waits on the batch but its own callbacks, and a batch costs round trips
# whatever its length: at 500 callbacks/s batches of 16 kept the one writer a second behind.
WRITE_BATCH_POSTGRES = 64


def write_batch(db: Database) -> int:
    """How many callbacks the task writes per transaction on this database."""
    return WRITE_BATCH_POSTGRES if db.dialect == "postgresql" else WRITE_BATCH


NUDGE_INTERVAL = 0.05  # seconds between two tasks queued by one callback writer
_processing = threading.Lock()
Callback = Row[Any]  # a spool row: id, channel_id, method, url, headers, query, body, attempts, ...
MAX_ATTEMPTS = 10
# How long a task may take over its claimed callbacks before anyone may claim them again.
LEASE = timedelta(minutes=1)
# How long the writer trusts a channel it looked up by key (and a key it found no channel for): a
# lookup with its decrypted secrets for every batch was a seventh of the writer's time. A channel
# disabled, deleted or given a new secret is seen within this long; the task drops what arrived for
# a channel that is gone by then.
CHANNEL_CACHE_SECONDS = 2.0
CHANNEL_CACHE_SIZE = 1024


# ----- the spool ------------------------------------------------------------------------------


def _standalone(table: Table) -> Table:
    """`table`'s columns without its foreign keys (the tables they point at are in the other file)."""
    columns = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in table.columns]
    return Table(table.name, MetaData(), *columns)


class CallbackSpool:
    """Where verified callbacks wait for their task (see the module's docstring)."""

    def __init__(self, database: Database) -> None:
        main_table: Table = InboundCallback.__table__  # type: ignore[assignment]
        url = sidecar_url(database.url, "callbacks")
        if url is None:
            self.database, self.table = database, main_table
            return
        self.database, self.table = Database(url), _standalone(main_table)
        self.table.create(self.database.engine, checkfirst=True)
        self._adopt(database, main_table)

    def _adopt(self, database: Database, main_table: Table) -> None:
        """Moves callbacks left waiting in the database's own table (stored before the spool had a
        file of its own) into the spool; nothing is lost across the upgrade."""
        with database.transaction(write=False) as session:
            left = [dict(row._mapping) for row in session.connection().execute(select(main_table))]
        if not left:
            return
        self.add([{**row, "id": None, "lease_until": None} for row in left])
        with database.transaction() as session:
            session.execute(delete(main_table).where(main_table.c.id.in_([row["id"] for row in left])))
        log.info("callbacks_moved_to_spool", callbacks=len(left))

    def connect(self) -> Connection:
        """A connection that writes to the spool (on SQLite through the write gate and BEGIN
        IMMEDIATE, as `Database.transaction` does), for a writer to hold across its transactions."""
        return self.database.engine.execution_options(**{WRITE_OPTION: True}).connect()

    def add(self, rows: list[dict[str, Any]]) -> list[int]:
        with self.connect() as connection:
            return self.add_on(connection, rows)

    def add_on(self, connection: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Stores `rows` in one transaction of `connection`; their ids."""
        if not rows:
            return []
        with connection.begin():
            if connection.dialect.name == "postgresql":
                return _insert_pipelined(connection, self.table, rows)
            # A core INSERT ... RETURNING: the ORM's unit of work was a third of the writer's time.
            return list(connection.scalars(insert(self.table).returning(self.table.c.id), rows))

    def claim(self, *, limit: int) -> list[Callback]:
        """The oldest waiting callbacks (or whose lease ran out), at most `limit`, leased to the
        caller; on PostgreSQL a row another task is claiming is skipped, not waited for. Callbacks
        claimed MAX_ATTEMPTS times already are dropped here, logged."""
        table, now = self.table, utcnow()
        claimable = or_(table.c.lease_until.is_(None), table.c.lease_until < now)
        with self.database.transaction() as session:
            connection = session.connection()
            given_up = connection.scalars(
                delete(table).where(claimable, table.c.attempts >= MAX_ATTEMPTS).returning(table.c.id)
            ).all()
            if given_up:
                log.error("callbacks_given_up", callback_ids=list(given_up), attempts=MAX_ATTEMPTS)
            oldest = select(table.c.id).where(claimable).order_by(table.c.id).limit(limit)
            claimed = connection.execute(
                update(table)
                .where(table.c.id.in_(oldest.with_for_update(skip_locked=True).scalar_subquery()))
                .values(lease_until=now + LEASE, attempts=table.c.attempts + 1)
                .returning(*table.c)
            ).all()
        return sorted(claimed, key=lambda row: int(row.id))

    def remove(self, ids: Sequence[int]) -> None:
        if ids:
            with self.database.transaction() as session:
                session.execute(delete(self.table).where(self.table.c.id.in_(list(ids))))

    def waiting(self) -> int:
        with self.database.transaction(write=False) as session:
            return int(session.scalar(select(func.count()).select_from(self.table)) or 0)


def _insert_pipelined(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """PostgreSQL: one short INSERT per row, sent together in psycopg's pipeline (one round trip),
    instead of SQLAlchemy's one INSERT with every row's values. That statement's text grows with the
    batch, and psycopg parses its placeholders again whenever it has more parameters than its cache
    keeps (50: five callbacks), which cost more CPU per callback than the rest of storing it."""
    sql, columns, processors = _pipelined_insert(connection.dialect, table, tuple(rows[0]))
    converted = list(zip(columns, processors, strict=True))
    params = [tuple(row[name] if to is None else to(row[name]) for name, to in converted) for row in rows]
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    ids: list[int] = []
    with driver.cursor() as cursor:
        cursor.executemany(sql, params, returning=True)
        while True:
            found = cursor.fetchone()
            assert found is not None
            ids.append(int(found[0]))
            if not cursor.nextset():
                return ids


@functools.cache
def _pipelined_insert(
    dialect: Dialect, table: Table, names: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]:
    """The INSERT of these columns (the id is the database's) with the casts and value conversions
    SQLAlchemy would use."""
    columns = [column for column in table.columns if column.name in names and not column.primary_key]
    types = [column.type.dialect_impl(dialect) for column in columns]
    quote = dialect.identifier_preparer
    placeholders = ", ".join(f"%s::{dialect.type_compiler_instance.process(kind)}" for kind in types)
    sql = (
        f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(column.name) for column in columns)}) "
        f"VALUES ({placeholders}) RETURNING {quote.quote('id')}"
    )
    return sql, tuple(column.name for column in columns), tuple(kind.bind_processor(dialect) for kind in types)


_spools: dict[str, CallbackSpool] = {}
_spools_lock = threading.Lock()


def callback_spool(database: Database) -> CallbackSpool:
    """The spool of `database` (one per database URL and process)."""
    with _spools_lock:
        spool = _spools.get(database.url)
        if spool is None:
            spool = _spools[database.url] = CallbackSpool(database)
        return spool


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
    future: "asyncio.Future[Channel | None]"


Outcome = tuple[_Pending, BaseException | None, Channel | None]  # a request, its error or its channel
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
        self._channels: dict[str, tuple[float, Channel | None]] = {}  # key -> (looked up at, channel)
        # Held by the writer's thread across batches: a pooled session per batch cost a checkout
        # and a liveness ping (one more round trip to PostgreSQL) before every insert.
        self._connection: Connection | None = None

    async def accept(self, key: str, incoming: WebhookRequest) -> Channel | None:
        """Returns once the callback is stored, with its channel; raises NotFound or PermissionDenied
        (stored nowhere)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callback-writer", daemon=True)
                self._thread.start()
        future: asyncio.Future[Channel | None] = asyncio.get_running_loop().create_future()
        self._queue.put(_Pending(key, incoming, future))
        return await future

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(_STOP)
                thread.join(timeout=30)
        self._release_connection()

    def _release_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a connection already broken has nothing to give back
                connection.close()

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
                    _settle([(item, exc, None) for item in pending])
            if unqueued and (stopping or time.monotonic() - last_nudge >= NUDGE_INTERVAL):
                enqueue_callbacks(unqueued)
                unqueued, last_nudge = [], time.monotonic()
            if stopping:
                return

    def _channel(self, key: str) -> Channel | None:
        now = time.monotonic()
        cached = self._channels.get(key)
        if cached is None or now - cached[0] > CHANNEL_CACHE_SECONDS:
            if len(self._channels) >= CHANNEL_CACHE_SIZE:  # keys sprayed at random must not grow it
                self._channels.clear()
            with self.database.transaction(write=False) as session:
                cached = self._channels[key] = (now, channels_repo.channel_by_key(session, key))
        return cached[1]

    def _store(self, batch: list[_Pending]) -> list[int]:
        """Stores the verified callbacks of `batch` in one transaction of the spool and answers every
        request of it; the stored rows' ids."""
        refused: list[Outcome] = []
        accepted: list[Outcome] = []
        rows: list[dict[str, Any]] = []
        for item in batch:
            try:
                channel = _verify(self._channel(item.key), item.incoming)
            except DomainError as exc:
                refused.append((item, exc, None))
                continue
            rows.append(_row(channel, item.incoming))
            accepted.append((item, None, channel))
        _settle(refused)
        ids = self._insert(rows)
        # Answered before the task is queued: the rows are what makes the 200 safe (a lost task is
        # swept up).
        _settle(accepted)
        return ids

    def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """The rows stored in one transaction on the held connection. A connection the server closed
        meanwhile (a restart, an idle timeout) is replaced and the batch tried once more: if the
        first try did commit, the rows are stored twice, which the task's deduplication absorbs."""
        spool = callback_spool(self.database)
        for last_try in (False, True):
            if self._connection is None:
                self._connection = spool.connect()
            try:
                return spool.add_on(self._connection, rows)
            except DBAPIError as exc:
                self._release_connection()
                if last_try or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def _row(channel: Channel, incoming: WebhookRequest) -> dict[str, Any]:
    return {
        "workspace_id": channel.workspace_id,
        "channel_id": channel.id,
        "method": incoming.method,
        "url": incoming.url,
        "headers": dict(incoming.headers),
        "query": dict(incoming.query),
        "body": incoming.body,
        "received_at": utcnow(),
        "attempts": 0,
        "lease_until": None,
    }


def _settle(outcomes: Sequence[Outcome]) -> None:
    """Answers the requests: their errors or their channels."""
    answer_from_thread((item.future, exc if exc is not None else channel) for item, exc, channel in outcomes)


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
    channel = await writer.accept(key, incoming)
    adapter = get_adapter(channel.type) if channel is not None else None
    if isinstance(adapter, CallbackAnswer):
        body, media_type = adapter.callback_answer(incoming)
        return Response(body, media_type=media_type)
    return Response(status_code=200)


# Handshakes (GET) only: the callbacks themselves are posted, and CallbackFrontDoor answers those.
@router.get("/webhooks/{key}", include_in_schema=False)
async def provider_webhook(key: str, request: Request) -> Response:
    return await _callback(key, request)


@router.get("/channels/{key}/callback", include_in_schema=False)
async def channel_callback(key: str, request: Request) -> Response:
    return await _callback(key, request)


CALLBACK_PATH = re.compile(r"/webhooks/(?P<key>[^/]+)|/channels/(?P<channel>[^/]+)/callback")


class CallbackFrontDoor:
    """Answers the callbacks providers post (the two paths above) before the app's routing does.

    At hundreds of callbacks a second the event loop is what an acknowledgement queues for, and
    FastAPI's route matching, dependency solving and exception layers cost it about three times
    what reading, verifying and storing the callback do (a profile of a server under 500 Twilio
    callbacks a second). Installed inside the body limit and the security headers, which still
    apply; the routes' checks are made here the same way (kit.http's rule for the path's and the
    query's text, refusals as the JSON errors of channels.http). Everything else passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = CALLBACK_PATH.fullmatch(_route_path(scope)) if scope["type"] == "http" else None
        if found is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = found["key"] or found["channel"]
        scope["path_params"] = {"key": key}
        request = Request(scope, receive)
        try:
            await check_request_text(request, form=False, json=False)
            response = await _callback(key, request)
        except DomainError as exc:
            response = domain_error_response(exc)
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the app's routes see (without the prefix the app is mounted under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# ----- the task -------------------------------------------------------------------------------


def _request(row: Callback) -> WebhookRequest:
    return WebhookRequest(method=row.method, url=row.url, headers=row.headers, query=row.query, body=row.body)


def _parse(channel: Channel | None, row: Callback) -> ParsedWebhook:
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
    messages, echoes = (
        [
            replace(message, **{name: replace_unsafe_characters(getattr(message, name)) for name in _MESSAGE_TEXT})
            for message in found
        ]
        for found in (parsed.messages, parsed.echoes)
    )
    statuses = [replace(status, reason=replace_unsafe_characters(status.reason)) for status in parsed.statuses]
    templates = [
        replace(change, **{name: replace_unsafe_characters(getattr(change, name)) for name in _TEMPLATE_TEXT})
        for change in parsed.templates
    ]
    quality = [replace(change, event=replace_unsafe_characters(change.event)) for change in parsed.quality]
    return replace(parsed, messages=messages, statuses=statuses, echoes=echoes, templates=templates, quality=quality)


_TEMPLATE_TEXT = ("provider_template_id", "name", "language", "status", "category", "quality", "reason")


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
    "avatar_url",
)


def _acceptable(channel: Channel, message: InboundMessage) -> bool:
    try:
        check_inbound(message)
    except DomainError as exc:
        log.warning("webhook_message_skipped", channel_id=channel.id, reason=exc.message)
        return False
    return True


@dataclass
class Prepared:
    """A claimed callback, parsed, its customers' files fetched into storage."""

    row: Callback
    channel: Channel | None
    parsed: ParsedWebhook

    def discard(self) -> None:
        for message in self.parsed.messages:
            received_files.discard(message)


def _prepare(db: Database, rows: Sequence[Callback]) -> tuple[list[Prepared], list[Callback]]:
    """Parse the callbacks and fetch the files their new messages carry, outside any write transaction
    (a download must not hold the write lock). Returns what is ready and the callbacks left for
    later: a file that could not be fetched now is tried again when the callback's lease runs out,
    until its last attempt, which keeps the message with the file marked unavailable."""
    with db.transaction(write=False) as session:
        channels = {row.channel_id: session.get(Channel, row.channel_id) for row in rows}
        parsed = [(row, channels[row.channel_id], _parse(channels[row.channel_id], row)) for row in rows]
        keys = [
            (channel.id, m.provider_message_id)
            for _, channel, p in parsed
            if channel is not None
            for m in p.messages
            if m.provider_message_id and received_files.needs_fetching(m)
        ]
        known = {(m.channel_id, m.provider_message_id) for m in repo.messages_by_provider_ids(session, keys)}
    ready: list[Prepared] = []
    later: list[Callback] = []
    for row, channel, webhook in parsed:
        if channel is None or not any(received_files.needs_fetching(m) for m in webhook.messages):
            ready.append(Prepared(row, channel, webhook))
            continue
        fetched: list[InboundMessage] = []
        try:
            for message in webhook.messages:
                if (channel.id, message.provider_message_id) in known:
                    fetched.append(message)  # a repeat: its files are ours already
                else:
                    fetched.append(received_files.fetch(channel, message, last_try=row.attempts >= MAX_ATTEMPTS - 1))
        except received_files.FetchLater as exc:
            log.info("callback_files_later", callback_id=row.id, attempt=row.attempts, reason=str(exc))
            for message in fetched:
                received_files.discard(message)
            later.append(row)
            continue
        ready.append(Prepared(row, channel, replace(webhook, messages=fetched)))
    return ready, later


def _write(session: Session, prepared: Sequence[Prepared]) -> set[tuple[int, str]]:
    """Writes the callbacks; returns the messages among them that were new (not repeats of one
    stored before or earlier in the batch), as (channel id, provider message id)."""
    channels = {p.row.channel_id: session.get(Channel, p.row.channel_id) for p in prepared}
    inbound: list[tuple[Channel, InboundMessage]] = []
    rest: list[tuple[Channel, ParsedWebhook]] = []
    heard: dict[int, datetime] = {}
    failures: dict[int, tuple[datetime, ChannelError]] = {}
    for item in prepared:
        channel = channels[item.row.channel_id]
        if channel is None or not channel.active:
            item.discard()
            continue
        for message in item.parsed.messages:
            if _acceptable(channel, message):
                inbound.append((channel, received_files.attach(session, channel, message)))
            else:
                received_files.discard(message)
        rest.append((channel, item.parsed))
        at = item.row.received_at
        failure = status_failure(item.parsed.statuses)
        if failure is not None:
            # The provider says the channel failed: no sign of life (the newest such callback counts).
            if channel.id not in failures or failures[channel.id][0] <= at:
                failures[channel.id] = (at, failure)
        else:
            heard[channel.id] = max(heard.get(channel.id, at), at)
    # Parts of a long SMS wait for the rest; the last one in becomes the whole message.
    inbound = sms_parts.do_reassemble(session, inbound)
    new: set[tuple[int, str]] = set()
    if inbound:
        results = do_receive_many(session, inbound)
        new = {
            (channel.id, message.provider_message_id)
            for (channel, message), result in zip(inbound, results, strict=True)
            if not result.duplicate and message.provider_message_id
        }
        sms_consent.do_record_keywords(
            session, [(channel, message, result) for (channel, message), result in zip(inbound, results, strict=True)]
        )
        received_files.settle(
            session, [(message, result) for (_, message), result in zip(inbound, results, strict=True)]
        )
    statuses: list[tuple[Channel, StatusUpdate]] = []
    for channel, parsed in rest:
        if parsed.edits:
            do_apply_edits(session, channel, parsed.edits)
        if parsed.echoes:
            do_record_echoes(session, channel, parsed.echoes)
        statuses.extend((channel, status) for status in parsed.statuses)
    if statuses:
        do_apply_statuses(session, statuses)
        sms_consent.do_record_status_opt_outs(session, statuses)
    for channel, parsed in rest:
        if parsed.templates and do_apply_template_changes(session, channel, parsed.templates):
            # A template we had not read yet (created since the last sync): read its text now.
            on_commit(session, partial(enqueue_template_sync, channel.id))
        if parsed.quality:
            do_apply_quality_changes(session, channel, parsed.quality)
    for channel_id, at in heard.items():
        touch_callback(session, channel_id, at)
    # After the signs of life: a failure older than one of them was already over.
    for channel_id, (at, failure) in failures.items():
        record_failure(session, channel_id, failure, at, from_status=True)
    return new


def _follow_up(prepared: Sequence[Prepared], new: set[tuple[int, str]]) -> None:
    """The provider calls the stored callbacks ask for (Telegram's answerCallbackQuery, an SMS HELP
    reply); one answering a message is made once, for the callback that brought it first (`new`,
    from `_write`), never for a repeat. A failure is logged: the customer's message is stored
    either way."""
    unanswered = set(new)
    for item in prepared:
        channel = item.channel
        if channel is None or not item.parsed.follow_ups:
            continue
        adapter = get_adapter(channel.type)
        if not isinstance(adapter, MediaSource):
            continue
        for call in item.parsed.follow_ups:
            if "message_id" in call:
                answers = (channel.id, call["message_id"])
                if answers not in unanswered:
                    continue
                unanswered.discard(answers)
            try:
                adapter.follow_up(channel, call)
            except (ChannelError, ValueError) as exc:
                log.warning(
                    "callback_follow_up_failed", channel_id=channel.id, call=call.get("method"), reason=str(exc)
                )


def process_callbacks(db: Database) -> int:
    """Claims the oldest waiting callbacks (at most `write_batch`), writes them in one transaction and
    removes them from the spool; returns how many were claimed."""
    spool = callback_spool(db)
    rows = spool.claim(limit=write_batch(db))
    if not rows:
        return 0
    prepared, _later = _prepare(db, rows)  # the later ones keep their lease and are claimed again
    try:
        with db.transaction() as session:
            new = _write(session, prepared)
        written = prepared
    except Exception as exc:
        log.warning("callback_batch_failed", callbacks=len(prepared), error=str(exc))
        new = set()
        written = []
        for item in prepared:
            alone = _write_alone(db, item)
            if alone is not None:
                written.append(item)
                new |= alone
    # Before the rows go: a task that dies in between only makes a repeat call the provider refuses.
    _follow_up(written, new)
    spool.remove([int(item.row.id) for item in written])
    return len(rows)


def _write_alone(db: Database, item: Prepared) -> set[tuple[int, str]] | None:
    """The callback's new messages (see `_write`) once it is written; None when it failed: it
    keeps its lease and is claimed again after it (its fetched files are removed: the next try
    fetches them again)."""
    try:
        with db.transaction() as session:
            return _write(session, [item])
    except Exception as exc:
        # Logged each time with its id and attempt, so the body can be found in the spool.
        log.exception("callback_failed", callback_id=item.row.id, attempt=item.row.attempts, error=str(exc))
        item.discard()
        return None


@huey.task(name="conversations.process_callbacks")  # type: ignore[untyped-decorator]
def process_callbacks_task(callback_ids: list[int]) -> None:
    """Writes the oldest waiting callbacks, a batch at a time, until fewer than a full batch was left:
    `callback_ids` among them. Under a burst the first tasks write many batches and the ones
    behind them find their rows already written, so the burst costs few tasks. Returns nothing: a
    result would be one more synced write to the queue's storage per task."""
    db = task_database()
    # One writer of callbacks per process: consumer threads racing for the one write lock gain
    # nothing.
    with _processing:
        handled = total = process_callbacks(db)
        while handled == write_batch(db):
            handled = process_callbacks(db)
            total += handled
    log.debug("callbacks_written", queued_with=len(callback_ids), written=total)


def enqueue_callbacks(callback_ids: list[int]) -> None:
    try:
        process_callbacks_task(callback_ids)
    except Exception as exc:  # the rows stay; the periodic sweep picks them up
        log.warning("callback_enqueue_failed", callbacks=len(callback_ids), error=str(exc))


def do_flush_stale_sms_parts(session: Session, now: datetime) -> int:
    """Long SMS still missing parts after sms_parts.PART_WAIT, stored as they are; how many."""
    stale = sms_parts.stale_messages(session, now)
    if stale:
        do_receive_many(session, stale)
    return len(stale)


@huey.periodic_task(crontab(minute="*/5"), name="conversations.flush_stale_sms_parts")  # type: ignore[untyped-decorator]
def flush_stale_sms_parts() -> int:
    with task_database().transaction() as session:
        return do_flush_stale_sms_parts(session, utcnow())


@huey.periodic_task(crontab(minute="*"), name="conversations.sweep_callbacks")  # type: ignore[untyped-decorator]
def sweep_callbacks() -> int:
    """Callbacks whose task was lost (or failed, once their lease ran out): written a batch at a time
    until none is left."""
    db = task_database()
    handled = total = process_callbacks(db)
    while handled == write_batch(db):
        handled = process_callbacks(db)
        total += handled
    return total
