"""Process-level plumbing the inbox needs while the app runs: the realtime hub and, with an
embedded (SQLite or in-memory) queue, the huey consumer threads. The queue tasks themselves are
registered by app.py importing `tertulia.tasks`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from tertulia.kit import queue, realtime
from tertulia.kit.settings import Settings


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
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(app.state.inbound_writer.stop)
        await anyio.to_thread.run_sync(app.state.callback_writer.stop)
        if consumer is not None:
            await anyio.to_thread.run_sync(consumer.stop)
        await hub.stop()
