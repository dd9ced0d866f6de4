"""The queue factory and the embedded consumer."""

import time
from pathlib import Path

import pytest
from huey import MemoryHuey, RedisHuey, SqliteHuey

from tertulia.kit import queue


def test_make_huey_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(queue.make_huey(f"sqlite:///{tmp_path / 'q.db'}"), SqliteHuey)
    assert isinstance(queue.make_huey("redis://127.0.0.1:6379/3"), RedisHuey)
    assert isinstance(queue.make_huey("memory://"), MemoryHuey)
    with pytest.raises(ValueError, match="Unsupported"):
        queue.make_huey("amqp://nope")


def test_embedded_consumer_runs_a_task_and_stops() -> None:
    done: list[int] = []

    @queue.huey.task(name="tests.append")  # type: ignore[untyped-decorator]
    def append(value: int) -> None:
        done.append(value)

    queue.huey.immediate = False
    queue.huey.flush()
    consumer = queue.start_consumer(1)
    try:
        append(42)
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        consumer.stop(graceful=True)
        queue.huey.flush()
    assert done == [42]


def test_expiring_lock_is_exclusive_and_taken_over_from_a_dead_holder() -> None:
    queue.huey.immediate = False
    name = f"tests.lock.{time.monotonic_ns()}"
    with queue.expiring_lock(name, ttl_seconds=60) as first:
        assert first
        with queue.expiring_lock(name, ttl_seconds=60) as second:
            assert not second
    with queue.expiring_lock(name, ttl_seconds=60) as again:
        assert again  # released on exit
    # A holder killed with the lock held: its lock is older than the ttl.
    queue.huey.put_if_empty(f"{queue.huey.name}.lock.{name}", time.time() - 120)
    with queue.expiring_lock(name, ttl_seconds=60) as taken_over:
        assert taken_over


def test_a_stopping_consumer_runs_the_stop_jobs_first() -> None:
    stopped: list[str] = []

    def record() -> None:
        stopped.append("stop job")

    queue.huey.immediate = False
    queue.at_consumer_stop(record)
    try:
        consumer = queue.start_consumer(1)
        consumer.stop(graceful=True)
    finally:
        queue._stop_jobs.remove(record)
        queue.huey.flush()
    assert stopped == ["stop job"]
