"""The PostgreSQL queue backend: huey's storage contract, several consumers, retries.

Runs on PostgreSQL only, in a database of its own (skipped with the reason shown when no server
answers outside CI, like the rest of the suite).
"""

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from huey.constants import EmptyData
from huey.consumer import Consumer

from tertulia.kit.queue import make_huey
from tertulia.kit.queue_postgres import PostgresQueueHuey, PostgresQueueStorage, libpq_url, table_prefix
from tertulia.migrations import upgrade
from tests.conftest import drop_postgres_database, fresh_postgres_database, worker_name

_names = itertools.count(1)


@pytest.fixture(scope="module")
def queue_url() -> Iterator[str]:
    """A database for this module only, as a SQLAlchemy-style URL (the form TERTULIA_QUEUE_URL takes)."""
    name = f"tertulia_queue_test_{worker_name()}"
    yield fresh_postgres_database(name)
    drop_postgres_database(name)


def fresh_name() -> str:
    """A queue name of its own per test, so each test gets empty tables."""
    return f"qt{next(_names)}_{uuid.uuid4().hex[:6]}"


@pytest.fixture
def make_storage(queue_url: str) -> Iterator[Callable[..., PostgresQueueStorage]]:
    made: list[PostgresQueueStorage] = []

    def make(name: str | None = None, **options: Any) -> PostgresQueueStorage:
        storage = PostgresQueueStorage(name or fresh_name(), queue_url, **options)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


@pytest.fixture
def storage(make_storage: Callable[..., PostgresQueueStorage]) -> PostgresQueueStorage:
    return make_storage(read_timeout=0.2)


def sql(queue_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(queue_url), autocommit=True) as conn:
        cursor = conn.execute(query.encode(), params)
        return cursor.fetchall() if cursor.description else []


class QuietConsumer(Consumer):  # type: ignore[misc]
    def _set_signal_handlers(self) -> None:
        pass  # pytest owns SIGINT


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# URLs and names (no server needed).


def test_urls_and_table_names() -> None:
    assert (
        libpq_url("postgresql+psycopg://u:p@h:5433/db?sslmode=require") == "postgresql://u:p@h:5433/db?sslmode=require"
    )
    assert libpq_url("postgresql://h/db") == "postgresql://h/db"
    with pytest.raises(ValueError, match="Not a PostgreSQL queue URL"):
        libpq_url("postgresql+psycopg2://h/db")
    assert table_prefix("tertulia") == "tertulia_queue"
    assert table_prefix("Staging-2; DROP TABLE x") == "staging_2__drop_table_x_queue"
    assert table_prefix("9lives") == "q_9lives_queue"
    assert len(table_prefix("x" * 200) + "_schedule_queue_timestamp") <= 63


def test_make_huey_accepts_both_url_forms_without_connecting() -> None:
    # Port 9 on localhost answers nothing: building the queue must not need the server.
    for url in ("postgresql://127.0.0.1:9/nothing", "postgresql+psycopg://127.0.0.1:9/nothing"):
        huey = make_huey(url, "tertulia")
        assert isinstance(huey, PostgresQueueHuey)
        assert huey.storage.dsn == "postgresql://127.0.0.1:9/nothing"
        assert huey.storage.table_task == "tertulia_queue_task"
    with pytest.raises(ValueError, match="Unsupported"):
        make_huey("postgresql+asyncpg://127.0.0.1/db")


# The storage contract.


def test_tables_are_created_on_first_use_with_the_queue_name(queue_url: str, make_storage: Any) -> None:
    name = fresh_name()
    storage = make_storage(name)
    tables = [f"{name}_queue_{suffix}" for suffix in ("task", "schedule", "kv", "counter")]
    exists = "SELECT to_regclass(%s) IS NOT NULL"
    assert [sql(queue_url, exists, (t,))[0][0] for t in tables] == [False] * 4
    assert storage.queue_size() == 0
    assert [sql(queue_url, exists, (t,))[0][0] for t in tables] == [True] * 4


def test_several_processes_creating_the_tables_at_once(make_storage: Any) -> None:
    name = fresh_name()
    storages = [make_storage(name) for _ in range(6)]
    barrier = threading.Barrier(len(storages))
    errors: list[BaseException] = []

    def first_use(storage: PostgresQueueStorage) -> None:
        barrier.wait()
        try:
            storage.enqueue(b"x")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in storages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert storages[0].queue_size() == 6


def test_dequeue_takes_higher_priority_first_then_oldest(storage: PostgresQueueStorage) -> None:
    assert storage.dequeue() is None  # empty: waits read_timeout, returns nothing
    storage.enqueue(b"a")
    storage.enqueue(b"b", priority=None)
    storage.enqueue(b"urgent", priority=10)
    storage.enqueue(b"c")
    storage.enqueue(b"soon", priority=5)
    storage.enqueue(b"urgent-2", priority=10)
    assert storage.queue_size() == 6
    assert storage.enqueued_items() == [b"urgent", b"urgent-2", b"soon", b"a", b"b", b"c"]
    assert storage.enqueued_items(limit=2) == [b"urgent", b"urgent-2"]
    assert [storage.dequeue() for _ in range(4)] == [b"urgent", b"urgent-2", b"soon", b"a"]
    assert storage.queue_size() == 2
    storage.flush_queue()
    assert storage.queue_size() == 0
    assert storage.dequeue() is None


def test_queues_with_other_names_are_separate(make_storage: Any) -> None:
    one, other = make_storage(read_timeout=0.1), make_storage(read_timeout=0.1)
    one.enqueue(b"mine")
    assert other.dequeue() is None
    assert other.queue_size() == 0
    assert one.dequeue() == b"mine"


def test_blocking_dequeue_wakes_on_enqueue_from_another_connection(make_storage: Any) -> None:
    name = fresh_name()
    consumer_side, producer_side = make_storage(name, read_timeout=5), make_storage(name)
    assert consumer_side.queue_size() == 0  # tables exist before the wait starts
    got: list[bytes | None] = []
    waiter = threading.Thread(target=lambda: got.append(consumer_side.dequeue()))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    producer_side.enqueue(b"wake")
    waiter.join()
    assert got == [b"wake"]
    assert time.monotonic() - started < 3  # woke by NOTIFY, well before the 5 s read timeout


def test_concurrent_dequeues_never_take_the_same_item(make_storage: Any) -> None:
    name = fresh_name()
    producer = make_storage(name)
    for n in range(300):
        producer.enqueue(str(n).encode())
    taken: list[list[bytes]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def drain(index: int, storage: PostgresQueueStorage) -> None:
        barrier.wait()
        while (data := storage.dequeue()) is not None:
            taken[index].append(data)

    threads = [
        threading.Thread(target=drain, args=(i, make_storage(name, read_timeout=0.2))) for i in range(len(taken))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [item for items in taken for item in items]
    assert sorted(everything, key=int) == [str(n).encode() for n in range(300)]
    assert producer.queue_size() == 0


def test_read_schedule_returns_only_due_items_once(storage: PostgresQueueStorage) -> None:
    now = dt.datetime(2026, 5, 1, 12, 0, 0)  # huey passes naive UTC datetimes  # noqa: DTZ001
    storage.add_to_schedule(b"later", now + dt.timedelta(seconds=30))
    storage.add_to_schedule(b"due-second", now - dt.timedelta(seconds=1))
    storage.add_to_schedule(b"due-first", now - dt.timedelta(minutes=5))
    storage.add_to_schedule(b"exactly-now", now)
    assert storage.schedule_size() == 4
    assert storage.scheduled_items() == [b"due-first", b"due-second", b"exactly-now", b"later"]
    assert storage.scheduled_items(limit=1) == [b"due-first"]
    assert storage.read_schedule(now) == [b"due-first", b"due-second", b"exactly-now"]
    assert storage.read_schedule(now) == []
    assert storage.schedule_size() == 1
    assert storage.read_schedule(now + dt.timedelta(minutes=1)) == [b"later"]
    storage.add_to_schedule(b"x", now)
    storage.flush_schedule()
    assert storage.schedule_size() == 0


def test_result_store(storage: PostgresQueueStorage) -> None:
    assert storage.peek_data("k1") is EmptyData
    assert storage.pop_data("k1") is EmptyData
    assert not storage.has_data_for_key("k1")
    storage.put_data("k1", b"one", is_result=True)
    storage.put_data(b"k2", b"two")
    storage.put_data("k1", b"one again")  # overwrites
    assert storage.has_data_for_key("k1")
    assert storage.peek_data("k1") == b"one again"
    assert storage.peek_data("k1") == b"one again"  # peeking leaves it
    assert storage.peek_many(["k1", "k2", "missing"]) == {"k1": b"one again", "k2": b"two"}
    assert storage.result_store_size() == 2
    assert storage.result_items() == {"k1": b"one again", "k2": b"two"}
    assert storage.pop_data("k1") == b"one again"
    assert storage.pop_data("k1") is EmptyData
    assert storage.delete_data("k2") is True
    assert storage.delete_data("k2") is False
    storage.put_data("k3", b"\x00\xffbinary")
    assert storage.peek_data("k3") == b"\x00\xffbinary"
    storage.flush_results()
    assert storage.result_store_size() == 0


def test_put_if_empty_sets_only_once(storage: PostgresQueueStorage) -> None:
    assert storage.put_if_empty("lock", b"first") is True
    assert storage.put_if_empty("lock", b"second") is False
    assert storage.peek_data("lock") == b"first"
    assert storage.pop_data("lock") == b"first"
    assert storage.put_if_empty("lock", b"third") is True
    assert storage.peek_data("lock") == b"third"


def test_counters(storage: PostgresQueueStorage) -> None:
    assert storage.incr("hits") == 1
    assert storage.incr("hits", 5) == 6
    storage.delete_counter("hits")
    assert storage.incr("hits") == 1
    storage.flush_counters()
    assert storage.incr("hits", 2) == 2


def _drop_connection(queue_url: str, storage: PostgresQueueStorage) -> int:
    pid: int = storage.conn.info.backend_pid
    sql(queue_url, "SELECT pg_terminate_backend(%s)", (pid,))
    assert wait_until(lambda: not sql(queue_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)), 10)
    return pid


def test_a_dropped_connection_is_replaced(queue_url: str, storage: PostgresQueueStorage) -> None:
    """After a server restart or an idle timeout the next call may fail; the one after reconnects."""
    storage.enqueue(b"before")
    pid = _drop_connection(queue_url, storage)
    with pytest.raises(psycopg.OperationalError):
        storage.queue_size()
    storage.enqueue(b"after")
    assert storage.conn.info.backend_pid != pid
    assert storage.enqueued_items() == [b"before", b"after"]


def test_an_enqueue_on_a_dropped_connection_is_not_lost(queue_url: str, storage: PostgresQueueStorage) -> None:
    storage.enqueue(b"before")
    _drop_connection(queue_url, storage)
    storage.enqueue(b"during")
    assert storage.enqueued_items() == [b"before", b"during"]


def test_flush_all_empties_every_table(storage: PostgresQueueStorage) -> None:
    storage.enqueue(b"q")
    storage.add_to_schedule(b"s", dt.datetime(2030, 1, 1))  # noqa: DTZ001
    storage.put_data("r", b"v")
    storage.incr("c")
    storage.flush_all()
    assert (storage.queue_size(), storage.schedule_size(), storage.result_store_size()) == (0, 0, 0)
    assert storage.incr("c") == 1


# Consumers.


def test_a_failing_task_is_retried_and_its_result_stored(queue_url: str) -> None:
    huey = make_huey(queue_url, fresh_name())
    huey.store_intermediate_errors = False  # the caller sees the retried run's result, not the first error
    attempts: list[int] = []

    @huey.task(retries=2, retry_delay=1)  # type: ignore[untyped-decorator]
    def flaky(value: int) -> int:
        attempts.append(value)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return value * 2

    consumer = QuietConsumer(huey, workers=2, worker_type="thread", scheduler_interval=1, max_delay=0.5)
    consumer.start()
    try:
        result = flaky(21)
        assert result.get(blocking=True, timeout=20) == 42
    finally:
        consumer.stop(graceful=True)
        huey.storage.close()
    assert attempts == [21, 21]  # once failing, once retried from the schedule after its delay
    assert huey.storage.queue_size() == 0
    assert huey.storage.schedule_size() == 0


_WORKER_SCRIPT = textwrap.dedent(
    """
    import os, threading, time
    import psycopg
    from tertulia.kit import queue
    from tertulia.kit.queue_postgres import libpq_url

    url = libpq_url(os.environ["TERTULIA_QUEUE_URL"])
    local = threading.local()

    def conn():
        if getattr(local, "conn", None) is None:
            local.conn = psycopg.connect(url, autocommit=True)
        return local.conn

    @queue.huey.on_startup()
    def ready():
        conn().execute("INSERT INTO ready (pid) VALUES (%s)", (os.getpid(),))

    def record(n):
        time.sleep(0.002)
        conn().execute("INSERT INTO drained (n, pid) VALUES (%s, %s)", (n, os.getpid()))

    record.__module__ = "drain"  # huey names a task by module and name; both sides must agree
    queue.huey.task(name="record")(record)

    from tertulia.cli import app
    app(["worker", "--workers", "4"])
    """
)


def test_two_worker_processes_drain_500_tasks_exactly_once(queue_url: str, tmp_path: Path) -> None:
    """Two `tertulia worker` processes on the same URL: every task runs once, and both take part."""
    name = fresh_name()
    sql(queue_url, "CREATE TABLE drained (n integer NOT NULL, pid integer NOT NULL)")
    sql(queue_url, "CREATE TABLE ready (pid integer NOT NULL)")
    # The app's own periodic tasks run in these workers too; give them a database to sweep.
    app_database = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(app_database)
    env = {
        **os.environ,
        "TERTULIA_QUEUE_URL": queue_url,
        "TERTULIA_QUEUE_NAME": name,
        "TERTULIA_DATA_DIR": str(tmp_path),
        "TERTULIA_DATABASE_URL": app_database,
        "TERTULIA_LOG_LEVEL": "warning",
        # A separate worker publishes its jobs' events through Redis (it refuses in-process realtime).
        "TERTULIA_REALTIME_URL": "redis://127.0.0.1:6379/0",
        "TERTULIA_REALTIME_PREFIX": name,
    }
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = []
    for log in logs:
        # Output goes to a file: a pipe nobody reads would fill up and block the worker's logging.
        with log.open("wb") as output:
            workers.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-c", _WORKER_SCRIPT], env=env, stdout=output, stderr=subprocess.STDOUT
                )
            )
    huey = make_huey(queue_url, name)

    def run_in_a_worker(n: int) -> None:
        raise AssertionError("runs in the workers, never here")

    run_in_a_worker.__module__ = "drain"
    record = huey.task(name="record")(run_in_a_worker)

    try:

        def both_ready() -> bool:
            return bool(sql(queue_url, "SELECT count(DISTINCT pid) FROM ready")[0][0] == 2)

        assert wait_until(both_ready, timeout=60), "workers did not start"
        for n in range(500):
            record(n)

        def drained() -> bool:
            return bool(sql(queue_url, "SELECT count(*) FROM drained")[0][0] >= 500)

        assert wait_until(drained, timeout=120)
        time.sleep(0.5)  # a task run twice would show up as a 501st row
    finally:
        for process in workers:
            process.send_signal(signal.SIGINT)
        for process in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        huey.storage.close()
    outputs = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
    rows = sql(queue_url, "SELECT n, pid FROM drained")
    assert len(rows) == 500, f"{len(rows)} rows\n{outputs}"
    assert sorted(n for n, _ in rows) == list(range(500))
    pids = {pid for _, pid in rows}
    assert pids == {process.pid for process in workers}, "both workers should have taken tasks"
    assert huey.storage.queue_size() == 0
    assert [process.returncode for process in workers] == [0, 0], outputs
