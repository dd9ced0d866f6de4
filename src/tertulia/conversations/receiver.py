"""Inbound messages are written by one thread per process, many to a transaction ("group commit").

Sockets and endpoints hand a customer's message to `InboundWriter.receive` and await the result.
The writer thread takes everything waiting (up to MAX_BATCH) and appends it all in one write
transaction, so a burst of visitors costs one BEGIN/COMMIT instead of one each, and SQLite's single
write lock is never fought over by a crowd of request threads (its busy handler sleeps in steps of up
to 100 ms, which is what made latency explode under load). If anything in a batch fails, the batch
is rolled back and its messages are written one transaction each, so one bad message never costs
another its place. Events are published after the commit, as everywhere else.

A batch costs about a dozen statements whatever its size (4-5 ms of CPU on PostgreSQL), a message in
it a fraction of a millisecond more. Taken at once, what waits is often one or two messages, and
writers then spend a core on fixed costs. So while messages come in together (the last batch
held more than one), a writer lingers up to `linger_seconds` after a batch's first message for more
(TERTULIA_INBOUND_WRITER_LINGER_MS); a lone message, the rule when the inbox is quiet, is written
at once.
"""

import asyncio
import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.conversations.inbound import check_inbound, do_receive_many
from tertulia.conversations.schemas import message_dict
from tertulia.kit.db import Database
from tertulia.kit.errors import NotFound

log = structlog.get_logger()

MAX_BATCH = 64


@dataclass(frozen=True)
class ReceivedMessage:
    """What the caller needs after the session is gone: plain data only."""

    message: dict[str, Any]  # empty when blocked
    conversation_id: int | None  # None when blocked
    contact_id: int
    duplicate: bool
    blocked: bool = False  # the contact is blocked: nothing was put into the inbox


@dataclass
class _Pending:
    channel_id: int
    inbound: InboundMessage
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[ReceivedMessage]"


_STOP = object()


class InboundWriter:
    """`threads` writers share one queue. SQLite has one write lock, so one thread; on PostgreSQL a
    writer spends much of its time waiting for round trips, so more than one can run side by side."""

    def __init__(
        self, database: Database, *, threads: int = 1, max_batch: int = MAX_BATCH, linger_seconds: float = 0.0
    ) -> None:
        self.database = database
        self.max_batch = max_batch
        self.linger_seconds = linger_seconds
        self.thread_count = 1 if database.dialect == "sqlite" else max(1, threads)
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._last_batch_size = 0  # per writer thread would be exact; shared, it only steers lingering

    async def receive(self, channel_id: int, inbound: InboundMessage) -> ReceivedMessage:
        check_inbound(inbound)  # cheap checks before queueing: a bad message never joins a batch
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ReceivedMessage] = loop.create_future()
        self._queue.put(_Pending(channel_id, inbound, loop, future))
        return await future

    def _ensure_started(self) -> None:
        if self._threads:
            return
        with self._start_lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"inbound-writer-{n}", daemon=True)
                    for n in range(self.thread_count)
                ]
                for thread in self._threads:
                    thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the threads (app shutdown)."""
        with self._start_lock:
            threads, self._threads = self._threads, []
            for _ in threads:
                self._queue.put(_STOP)  # each thread ends at the first stop it takes
            for thread in threads:
                thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            batch, stop_after = self._next_batch()
            pending = [p for p in batch if isinstance(p, _Pending)]
            try:
                if pending:
                    self._write(pending)
            except BaseException as exc:  # the thread must survive anything one batch does
                log.exception("inbound_writer_failed", error=str(exc))
                for item in pending:
                    _settle(item, exc=exc)
            if stop_after:
                return

    def _next_batch(self) -> tuple[list[_Pending | object], bool]:
        """What waits, up to max_batch (lingering for more while messages come in together), and
        whether a stop came with it."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        linger = self.linger_seconds if self._last_batch_size > 1 else 0.0
        until = time.monotonic() + linger
        stop_after = False
        while len(batch) < self.max_batch:
            wait = until - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop_after = True
                break
            batch.append(item)
        self._last_batch_size = len(batch)
        return batch, stop_after

    def _write(self, batch: list[_Pending]) -> None:
        try:
            results = self._write_together(batch)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc=exc)
                return
            for item in batch:
                self._write([item])
            return
        for item, result in zip(batch, results, strict=True):
            _settle(item, result=result)

    def _write_together(self, batch: list[_Pending]) -> list[ReceivedMessage]:
        with self.database.transaction(write=True) as session:
            pairs = []
            for item in batch:
                channel = session.get(Channel, item.channel_id)  # from the identity map after the first
                if channel is None or not channel.active:
                    raise NotFound("No such channel.")
                pairs.append((channel, item.inbound))
            received = do_receive_many(session, pairs)
            return [
                ReceivedMessage(
                    message=message_dict(r.message) if r.conversation is not None else {},
                    conversation_id=r.conversation.id if r.conversation is not None else None,
                    contact_id=r.contact.id,
                    duplicate=r.duplicate,
                    blocked=r.blocked,
                )
                for r in received
            ]


def _settle(item: _Pending, *, result: ReceivedMessage | None = None, exc: BaseException | None = None) -> None:
    def apply() -> None:
        if item.future.done():
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody is waiting
        item.loop.call_soon_threadsafe(apply)
