"""Process-level plumbing the inbox needs while the app runs: the realtime hub and, with an
embedded (SQLite or in-memory) queue, the huey consumer threads. The queue tasks themselves are
registered by app.py importing `tertulia.tasks`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import structlog
from fastapi import FastAPI

from tertulia.kit import queue, realtime
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users import presence

log = structlog.get_logger()


async def sweep_presence(db: Database, store: presence.PresenceStore, every: float) -> None:
    """Activity statuses whose tabs' leases expired (a process died) or that went idle."""
    while True:
        await anyio.sleep(every)
        try:
            await anyio.to_thread.run_sync(presence.sweep, db, store)
        except Exception:  # a database or Redis hiccup must not end the sweeps of this process
            log.exception("presence_sweep_failed")


def embedded_queue(settings: Settings) -> bool:
    url = settings.resolved_queue_url()
    return settings.queue_embedded and url.startswith(("sqlite:", "memory:")) and not queue.huey.immediate


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    hub = realtime.make_hub(settings.realtime_url, settings.realtime_prefix)
    await hub.start()
    realtime.set_hub(hub)
    app.state.hub = hub
    queue.use_database(app.state.db)
    consumer = queue.start_consumer(settings.queue_workers) if embedded_queue(settings) else None
    sweeper = None
    if settings.presence_sweep_seconds > 0:
        sweeper = asyncio.create_task(sweep_presence(app.state.db, app.state.presence, settings.presence_sweep_seconds))
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await anyio.to_thread.run_sync(app.state.inbound_writer.stop)
        await anyio.to_thread.run_sync(app.state.callback_writer.stop)
        await anyio.to_thread.run_sync(app.state.rate_limiter.close)
        if consumer is not None:
            await anyio.to_thread.run_sync(consumer.stop)
        await hub.stop()
