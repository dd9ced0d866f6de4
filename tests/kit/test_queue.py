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
        consumer.stop()
        queue.huey.flush()
    assert done == [42]
