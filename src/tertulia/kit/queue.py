"""Background jobs on huey. Tasks take ids only and are idempotent: the database is the truth.

`TERTULIA_QUEUE_URL` picks the backend:
- unset or `sqlite:///path`: SqliteHuey in a file beside the database; `tertulia serve` runs the
  consumer threads itself (no extra process to run on a laptop or a small server);
- `redis://...`: RedisHuey; run one or more `tertulia worker` processes (web processes never
  consume a Redis or PostgreSQL queue; `TERTULIA_QUEUE_EMBEDDED=false` also stops them consuming
  an SQLite one);
- `postgresql://...` or `postgresql+psycopg://...`: tables in that database (it can be the app's
  own, see `kit/queue_postgres.py`); run `tertulia worker` processes as with Redis;
- `memory://`: an in-process queue for tests and one-off scripts.

Work is enqueued only after the transaction that produced it commits (`kit.db.on_commit`), so a
worker never sees an id whose row is not there yet.

A task taken off the queue by a consumer that then dies is gone from the queue: the database says
what is still to do, so every consumer runs the start-up jobs registered with `at_consumer_start`
(see `tertulia/tasks.py`) once before it takes work, and periodic sweeps catch the rest.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.consumer import Consumer

from tertulia.kit import realtime
from tertulia.kit.db import Database, get_database
from tertulia.kit.queue_postgres import URL_SCHEMES, make_postgres_huey
from tertulia.kit.settings import get_settings


def make_huey(url: str, name: str = "tertulia") -> Huey:
    if url.startswith(("redis://", "rediss://")):
        return RedisHuey(name, url=url)
    if url.startswith("sqlite:///"):
        path = Path(url.split("///", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        # huey's 5 s busy timeout is too short when the web process writes too: an enqueue that gave
        # up left a message waiting for the periodic sweep.
        return SqliteHuey(name, filename=str(path), timeout=30)
    if url.startswith(URL_SCHEMES):
        return make_postgres_huey(name, url)
    if url == "memory://":
        return MemoryHuey(name)
    raise ValueError(
        f"Unsupported TERTULIA_QUEUE_URL {url!r}: use sqlite:///path, redis://host, postgresql://host/db or memory://"
    )


huey: Huey = make_huey(get_settings().resolved_queue_url(), get_settings().queue_name)

_database_lock = threading.Lock()
_database: Database | None = None


def use_database(database: Database | None) -> None:
    """Point tasks run in this process at `database` (the app's, or a test's); None = from settings."""
    global _database
    with _database_lock:
        _database = database


def task_database() -> Database:
    return _database or get_database()


log = structlog.get_logger("tertulia.queue")


@contextmanager
def expiring_lock(name: str, ttl_seconds: float) -> Iterator[bool]:
    """Yields True when this caller holds lock `name` in the queue's storage. Unlike huey's
    `lock_task`, a lock whose holder died (kill -9) is taken over after `ttl_seconds`, instead of
    blocking that work until someone flushes the queue's storage."""
    key = f"{huey.name}.lock.{name}"
    now = time.time()
    held = huey.put_if_empty(key, now)
    if not held:
        since = huey.get(key, peek=True)
        if not isinstance(since, float) or now - since > ttl_seconds:
            huey.delete(key)
            held = huey.put_if_empty(key, now)
    try:
        yield held
    finally:
        if held:
            huey.delete(key)


_start_jobs: list[Callable[[], object]] = []
# "worker" in `tertulia worker`; otherwise the consumer is the one `tertulia serve` embeds.
_consumer_kind = "serve"


def consumer_kind() -> str:
    """What runs this process's consumer: "worker" or "serve" (what its start-up jobs may record)."""
    return _consumer_kind


_stop_jobs: list[Callable[[], object]] = []


def at_consumer_start(job: Callable[[], object]) -> None:
    """Run `job` once each time a consumer of this process starts, before it takes work (re-queueing
    what a crashed process left behind). Registered by `tertulia/tasks.py` only."""
    if job not in _start_jobs:
        _start_jobs.append(job)


def at_consumer_stop(job: Callable[[], object]) -> None:
    """Run `job` when a consumer of this process is asked to stop, before its workers are (handing
    long jobs back to the queue). Registered by `tertulia/tasks.py` only."""
    if job not in _stop_jobs:
        _stop_jobs.append(job)


def _run_all(jobs: list[Callable[[], object]], event: str) -> None:
    for job in list(jobs):
        try:
            job()
        except Exception:  # the periodic sweeps catch up on whatever this missed
            log.exception(event, job=getattr(job, "__name__", repr(job)))


def run_start_jobs() -> None:
    _run_all(_start_jobs, "consumer_start_job_failed")


def run_stop_jobs() -> None:
    _run_all(_stop_jobs, "consumer_stop_job_failed")


class _Consumer(Consumer):  # type: ignore[misc]
    # Called once the worker threads and the scheduler run (`tertulia worker` says it has started).
    on_started: Callable[[], object] | None = None

    def start(self) -> None:
        super().start()
        if self.on_started is not None:
            self.on_started()

    def stop(self, graceful: bool = False) -> None:
        run_stop_jobs()
        super().stop(graceful=graceful)


class _EmbeddedConsumer(_Consumer):
    def _set_signal_handlers(self) -> None:
        # Inside `tertulia serve` the web server owns SIGINT/SIGTERM; lifespan shutdown stops us.
        pass


def start_consumer(workers: int, *, embedded: bool = True) -> Any:
    """Start worker threads and the scheduler; returns the consumer (call `.stop(graceful=True)`)."""
    consumer_class = _EmbeddedConsumer if embedded else _Consumer
    run_start_jobs()
    consumer = consumer_class(
        huey, workers=workers, worker_type="thread", periodic=True, scheduler_interval=1, max_delay=1.0
    )
    consumer.start()
    return consumer


def run_worker(workers: int, on_started: Callable[[], object] | None = None) -> None:
    """A standalone consumer process (`tertulia worker`); blocks until SIGINT/SIGTERM.

    Events its tasks emit reach the web processes' sockets only through a shared realtime hub
    (`TERTULIA_REALTIME_URL=redis://...`); publishing needs no listener, so the hub is not started.
    """
    global _consumer_kind
    settings = get_settings()
    realtime.set_hub(realtime.make_hub(settings.realtime_url, settings.realtime_prefix))
    _consumer_kind = "worker"
    run_start_jobs()
    consumer = _Consumer(
        huey, workers=workers, worker_type="thread", periodic=True, scheduler_interval=1, max_delay=1.0
    )
    consumer.on_started = on_started
    consumer.run()
