"""The shared limits behave the same in one process (memory) and across processes (Redis)."""

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tertulia.kit.ratelimit import (
    MemoryRateLimiter,
    MemorySlotLimiter,
    RateLimiter,
    RedisRateLimiter,
    RedisSlotLimiter,
    SlotLimiter,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")


def _prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def slots(request: pytest.FixtureRequest) -> Iterator[SlotLimiter]:
    if request.param == "memory":
        yield MemorySlotLimiter()
    else:
        yield RedisSlotLimiter(REDIS_URL, _prefix())


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def counter(request: pytest.FixtureRequest) -> RateLimiter:
    return MemoryRateLimiter() if request.param == "memory" else RedisRateLimiter(REDIS_URL, _prefix())


def test_slots_are_limited_and_given_back(slots: SlotLimiter) -> None:
    assert slots.acquire("k", 2, "a")
    assert slots.acquire("k", 2, "b")
    assert not slots.acquire("k", 2, "c")
    assert slots.acquire("k", 2, "a")  # a holder asking again keeps its one slot
    assert slots.acquire("other", 2, "c")  # keys are separate
    slots.release("k", "a")
    assert slots.acquire("k", 2, "c")
    slots.renew("k", "c")
    assert not slots.acquire("k", 2, "d")


def test_two_limiters_on_one_redis_share_their_counts() -> None:
    """What several web processes see: one budget."""
    if not _redis_up():
        pytest.skip("Redis is not running")
    prefix = _prefix()
    first, second = RedisSlotLimiter(REDIS_URL, prefix), RedisSlotLimiter(REDIS_URL, prefix)
    assert first.acquire("visitor", 1, "socket-on-a")
    assert not second.acquire("visitor", 1, "socket-on-b")
    one, other = RedisRateLimiter(REDIS_URL, prefix), RedisRateLimiter(REDIS_URL, prefix)
    assert one.hit("messages", 2, 60) == 0
    assert other.hit("messages", 2, 60) == 0
    assert one.hit("messages", 2, 60) > 0


@needs_redis
def test_a_slot_whose_holder_died_is_freed_when_its_lease_ends() -> None:
    limiter = RedisSlotLimiter(REDIS_URL, _prefix(), lease_seconds=1)
    assert limiter.acquire("k", 1, "crashed-process")
    assert not limiter.acquire("k", 1, "new")
    time.sleep(2.1)
    assert limiter.acquire("k", 1, "new")


@needs_redis
def test_a_renewed_lease_outlives_its_first_term() -> None:
    limiter = RedisSlotLimiter(REDIS_URL, _prefix(), lease_seconds=2)
    assert limiter.acquire("k", 1, "alive")
    time.sleep(1.2)
    limiter.renew("k", "alive")
    time.sleep(1.2)
    assert not limiter.acquire("k", 1, "other")


def test_requests_over_the_limit_wait_for_the_window(counter: RateLimiter) -> None:
    assert [counter.hit("k", 2, 60) for _ in range(2)] == [0, 0]
    assert 0 < counter.hit("k", 2, 60) <= 60
    assert counter.hit("other", 2, 60) == 0


def test_an_unreachable_redis_lets_sockets_in() -> None:
    limiter = RedisSlotLimiter("redis://127.0.0.1:1/0", _prefix())
    assert limiter.acquire("k", 1, "a")
    limiter.renew("k", "a")
    limiter.release("k", "a")


def test_the_count_is_exact_over_any_window_not_per_fixed_window(counter: RateLimiter) -> None:
    """A fixed window let up to twice the limit through across its edge (the limit just before it,
    the limit again just after). The sliding window lets through at most `limit` in any `window`
    seconds, and says how long until the oldest counted request leaves it."""
    key = f"exact-{uuid.uuid4().hex}"
    # Start a second before a fixed 2-second window's edge, so the checks below always cross one.
    time.sleep((1.0 - time.time() % 2) % 2)
    assert [counter.hit(key, 3, 2) for _ in range(3)] == [0, 0, 0]
    waits = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # across any edge a fixed 2-second window would have
        waits.append(counter.hit(key, 3, 2))
        time.sleep(0.1)
    assert all(1 <= wait <= 2 for wait in waits), waits
    time.sleep(0.7)  # now more than 2 s after the first three
    assert counter.hit(key, 3, 2) == 0


@needs_redis
def test_concurrent_processes_cannot_both_take_the_last_place() -> None:
    prefix = _prefix()
    limiters = [RedisRateLimiter(REDIS_URL, prefix) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: limiters[n % 4].hit("race", 10, 60), range(80)))
    assert answers.count(0) == 10


def test_take_tells_the_places_left_and_when_one_frees(counter: RateLimiter) -> None:
    first = counter.take("budget", 2, 30)
    assert (first.allowed, first.limit, first.remaining) == (True, 2, 1)
    assert 29 <= first.reset_seconds <= 30
    second = counter.take("budget", 2, 30)
    assert (second.allowed, second.remaining) == (True, 0)
    refused = counter.take("budget", 2, 30)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after == refused.reset_seconds
    assert 1 <= refused.retry_after <= 30
    assert counter.take("other", 2, 30).remaining == 1  # budgets are per key
    assert counter.hit("budget", 2, 30) > 0  # `hit` counts against the same budget


def test_counts_from_the_event_loop_share_the_budget(counter: RateLimiter) -> None:
    """`hit_soon` is `hit` for sockets: twelve at once against a budget of five let exactly five
    through, and the budget is the one `hit` counts against."""

    async def hits() -> list[int]:
        return list(await asyncio.gather(*(counter.hit_soon("burst", 5, 60) for _ in range(12))))

    try:
        answers = asyncio.run(hits())
        assert answers.count(0) == 5
        assert all(1 <= wait <= 60 for wait in answers if wait)
        assert counter.hit("burst", 5, 60) > 0
        assert asyncio.run(hits()).count(0) == 0
        assert counter.hit("another", 5, 60) == 0
    finally:
        counter.close()


@needs_redis
def test_counts_from_several_event_loops_are_each_answered_on_their_own_loop() -> None:
    """Each web process's loop (and each test client's) waits on its own futures: the one sender
    thread answers every loop whose callers it counted, and 40 callers on four loops against a
    budget of 25 get exactly 25 places."""
    limiter = RedisRateLimiter(REDIS_URL, _prefix())
    answers: list[int] = []
    lock = threading.Lock()

    def loop_of_callers() -> None:
        async def ten() -> list[int]:
            return list(await asyncio.gather(*(limiter.hit_soon("shared", 25, 60) for _ in range(10))))

        mine = asyncio.run(ten())
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=loop_of_callers) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(answers) == 40
        assert answers.count(0) == 25
    finally:
        limiter.close()


@needs_redis
def test_many_counts_go_in_one_round_trip_and_keep_their_order() -> None:
    limiter = RedisRateLimiter(REDIS_URL, _prefix())
    allowances = limiter.take_many([("a", 1, 60), ("a", 1, 60), ("b", 2, 60), ("b", 2, 60), ("b", 2, 60)])
    assert [a.allowed for a in allowances] == [True, False, True, True, False]
    assert [a.remaining for a in allowances] == [0, 0, 1, 0, 0]


@needs_redis
def test_many_counts_load_the_script_when_redis_does_not_know_it() -> None:
    """Redis forgets scripts when it restarts: the counts it refused for that are sent again once,
    and none is counted twice."""
    limiter = RedisRateLimiter(REDIS_URL, _prefix())
    # A script Redis has never seen: the same count, with a comment that changes its digest.
    limiter._hit = limiter._redis.register_script(f"{limiter._hit.script}\n-- {uuid.uuid4().hex}")
    allowances = limiter.take_many([("a", 2, 60), ("a", 2, 60), ("a", 2, 60)])
    assert [a.allowed for a in allowances] == [True, True, False]
    assert limiter.take("a", 2, 60).retry_after > 0


def test_an_unreachable_redis_lets_counts_from_the_event_loop_through() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", _prefix())

    async def hits() -> list[int]:
        return list(await asyncio.gather(*(limiter.hit_soon("k", 1, 60) for _ in range(3))))

    try:
        assert asyncio.run(hits()) == [0, 0, 0]
    finally:
        limiter.close()
