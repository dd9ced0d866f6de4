"""The realtime hub: in-process fan-out, and Redis pub/sub between hubs."""

import asyncio
import threading
import uuid

import pytest
import redis
from typer.testing import CliRunner

from tertulia.cli import app as cli_app
from tertulia.kit import realtime
from tertulia.kit.realtime import MemoryHub, RedisHub, make_hub
from tertulia.kit.settings import get_settings

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_make_hub_picks_the_backend() -> None:
    assert isinstance(make_hub("memory://"), MemoryHub)
    assert isinstance(make_hub("redis://127.0.0.1:6379/0"), RedisHub)
    with pytest.raises(ValueError, match="Unsupported"):
        make_hub("kafka://nope")


def test_memory_hub_delivers_across_threads_to_its_workspace_only() -> None:
    async def scenario() -> list[dict[str, object]]:
        hub = MemoryHub()
        with hub.subscribe(1) as mine, hub.subscribe(2) as theirs:
            publisher = threading.Thread(
                target=lambda: [
                    hub.publish({"type": "x", "workspace_id": 2, "n": 0}),
                    hub.publish({"type": "x", "workspace_id": 1, "n": 1}),
                ]
            )
            publisher.start()
            publisher.join()
            got = [await asyncio.wait_for(mine.get(), 2)]
            assert theirs.queue.qsize() == 1
            return got

    assert asyncio.run(scenario()) == [{"type": "x", "workspace_id": 1, "n": 1}]


def test_events_published_in_a_batch_arrive_together_in_order_and_once_per_topic() -> None:
    async def scenario() -> tuple[list[object], list[object]]:
        hub = MemoryHub()
        previous = realtime.get_hub()
        realtime.set_hub(hub)
        try:
            with hub.subscribe(1) as everything, hub.subscribe(1, "contact:5") as contact:
                contact.add_topic("visitor:v")

                def commit() -> None:
                    with realtime.batched():
                        with realtime.batched():  # nested blocks join the outer one
                            realtime.publish({"type": "x", "workspace_id": 1, "n": 0, "topics": []})
                        realtime.publish({"type": "x", "workspace_id": 1, "n": 1, "topics": ["contact:5", "visitor:v"]})
                        assert everything.queue.empty()  # nothing leaves before the block ends
                    realtime.publish({"type": "x", "workspace_id": 1, "n": 2, "topics": ["contact:5"]})

                await asyncio.to_thread(commit)
                got = [(await asyncio.wait_for(everything.get(), 2))["n"] for _ in range(3)]
                mine = [(await asyncio.wait_for(contact.get(), 2))["n"] for _ in range(2)]
                await asyncio.sleep(0.05)
                assert contact.queue.empty()
                return got, mine
        finally:
            realtime.set_hub(previous)

    assert asyncio.run(scenario()) == ([0, 1, 2], [1, 2])


def test_a_large_batch_is_published_in_slices_and_arrives_whole_in_order() -> None:
    async def scenario() -> list[object]:
        hub = MemoryHub()
        previous = realtime.get_hub()
        realtime.set_hub(hub)
        try:
            with hub.subscribe(1) as subscription:

                def commit() -> None:
                    with realtime.batched():
                        for n in range(realtime.MAX_EVENTS_PER_PUBLISH * 2 + 50):
                            realtime.publish({"type": "x", "workspace_id": 1, "n": n})

                await asyncio.to_thread(commit)
                size = realtime.MAX_EVENTS_PER_PUBLISH * 2 + 50
                return [(await asyncio.wait_for(subscription.get(), 2))["n"] for _ in range(size)]
        finally:
            realtime.set_hub(previous)

    assert asyncio.run(scenario()) == list(range(realtime.MAX_EVENTS_PER_PUBLISH * 2 + 50))


def test_a_slow_subscriber_is_told_it_overflowed() -> None:
    async def scenario() -> dict[str, object]:
        hub = MemoryHub()
        with hub.subscribe(1) as subscription:
            for n in range(subscription.queue.maxsize + 5):
                subscription.offer({"type": "x", "workspace_id": 1, "n": n})
            assert subscription.overflowed
            last: dict[str, object] = {}
            while not subscription.queue.empty():
                last = await subscription.get()
            return last

    assert asyncio.run(scenario()) == {"type": "overflow"}


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_redis_hubs_share_events_exactly_once() -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[int], list[int]]:
        sender, receiver = RedisHub(REDIS_URL, prefix), RedisHub(REDIS_URL, prefix)
        await sender.start()
        await receiver.start()
        try:
            with sender.subscribe(7) as local, receiver.subscribe(7) as remote:
                for n in range(3):
                    await asyncio.to_thread(sender.publish, {"type": "x", "workspace_id": 7, "n": n})
                # A transaction's events travel as one message and arrive as separate events.
                batch = [{"type": "x", "workspace_id": 7, "n": n} for n in range(3, 6)]
                await asyncio.to_thread(sender.publish_many, batch)
                got_remote = [int((await asyncio.wait_for(remote.get(), 5))["n"]) for _ in range(6)]  # type: ignore[call-overload]
                got_local = [int((await asyncio.wait_for(local.get(), 5))["n"]) for _ in range(6)]  # type: ignore[call-overload]
                await asyncio.sleep(0.2)
                assert remote.queue.empty()
                assert local.queue.empty()
                return got_remote, got_local
        finally:
            await sender.stop()
            await receiver.stop()

    assert asyncio.run(scenario()) == ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5])


def test_a_separate_worker_refuses_in_process_realtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker writes incoming messages and delivery ticks: with in-process realtime its events
    would never reach the web processes' sockets, so it does not start."""
    monkeypatch.setenv("TERTULIA_REALTIME_URL", "memory://")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["worker"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "TERTULIA_REALTIME_URL=redis://" in result.output
