"""Shared limits: exact request counters (a sliding window) and caps on things held open (sockets).

In-process by default (one `tertulia serve` process, e.g. on SQLite); in Redis when
`TERTULIA_REALTIME_URL` is `redis://`, so every web process counts against the same budget.

- `RateLimiter.hit(key, limit, window)`: let a request through if fewer than `limit` were let
  through in the `window` seconds before it, and count it. Exact: a log of the accepted requests'
  times per key (a sorted set in Redis, changed by one Lua script, so concurrent processes cannot
  both take the last place), not a fixed window, which lets up to twice the limit through across a
  window's edge. It holds at most `limit` entries per key; refused requests are not recorded.
  `take` is the same count, also saying how many places are left and when the next one frees (the
  API's X-RateLimit-* headers). `hit_soon` is `hit` for the event loop: in Redis the counts that
  callers ask for meanwhile go in one pipelined round trip from one thread, where a thread per
  request (anyio's) cost a visitor's message more CPU than writing it.
- `SlotLimiter.acquire(key, limit, holder)`: take one of `limit` slots for as long as `holder` keeps it
  (`release` gives it back). In Redis a slot is a lease that the holder renews (`renew`) at least
  every `SLOT_LEASE_SECONDS / 3`; a process that dies without releasing loses its slots when their
  leases run out, so a crash never leaves a visitor locked out for good.
"""

import asyncio
import math
import queue
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import structlog

from tertulia.kit.futures import answer_from_thread

log = structlog.get_logger()

SLOT_LEASE_SECONDS = 60


@dataclass(frozen=True)
class Allowance:
    """One request's place in its budget."""

    limit: int
    remaining: int  # places left in the window after this request
    reset_seconds: int  # until the oldest counted request leaves the window (a place frees), at least 1
    retry_after: int  # 0 when the request was let through, else whole seconds to wait

    @property
    def allowed(self) -> bool:
        return self.retry_after == 0


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window_seconds: int) -> int:
        """Count one request; return 0 if allowed, else seconds until the window resets."""
        ...

    def take(self, key: str, limit: int, window_seconds: int) -> Allowance:
        """`hit`, with what is left of the budget."""
        ...

    async def hit_soon(self, key: str, limit: int, window_seconds: int) -> int:
        """`hit` from the event loop, without blocking it."""
        ...

    def close(self) -> None:
        """Stop what `hit_soon` started (app shutdown)."""
        ...


class SlotLimiter(Protocol):
    def acquire(self, key: str, limit: int, holder: str) -> bool:
        """Take a slot of `key` for `holder` (True), or find all `limit` taken (False)."""
        ...

    def renew(self, key: str, holder: str) -> None:
        """Keep `holder`'s slot of `key` (a lease in Redis)."""
        ...

    def release(self, key: str, holder: str) -> None: ...


class MemoryRateLimiter:
    # Keys whose every entry has left its window are dropped when this many are kept.
    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per key: its window, and when the requests it let through came (oldest first).
        self._accepted: dict[str, tuple[int, deque[float]]] = {}

    def hit(self, key: str, limit: int, window_seconds: int) -> int:
        return self.take(key, limit, window_seconds).retry_after

    async def hit_soon(self, key: str, limit: int, window_seconds: int) -> int:
        return self.hit(key, limit, window_seconds)  # a few microseconds under a lock: no need to leave the loop

    def close(self) -> None:
        return None

    def take(self, key: str, limit: int, window_seconds: int) -> Allowance:
        now = time.monotonic()
        with self._lock:
            _, times = self._accepted.setdefault(key, (window_seconds, deque()))
            while times and times[0] <= now - window_seconds:
                times.popleft()
            if len(times) < limit:
                times.append(now)
                if len(self._accepted) > self.MAX_KEYS:
                    self._prune(now)
                return Allowance(limit, limit - len(times), _wait(times[0] + window_seconds - now), 0)
            wait = _wait(times[0] + window_seconds - now)
            return Allowance(limit, 0, wait, wait)

    def _prune(self, now: float) -> None:
        kept = self._accepted.items()
        self._accepted = {key: entry for key, entry in kept if entry[1] and entry[1][-1] > now - entry[0]}


def _wait(seconds: float) -> int:
    """Whole seconds to wait (Retry-After), at least one."""
    return max(1, math.ceil(seconds))


# The accepted requests of a key: member = a unique id, score = when (Redis's own clock, so the
# processes' clocks do not matter). Returns {accepted (1 or 0), requests counted in the window, the
# milliseconds until the oldest of them leaves it}.
_HIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local accepted = 0
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window + 1000)
    accepted = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {accepted, redis.call('ZCARD', KEYS[1]), math.max(1, tonumber(oldest[2]) + window - now)}
"""


class RedisRateLimiter:
    """Budgets shared by every process. If Redis cannot be reached, the request is let through (and
    the failure logged), like the slot limiter: an outage of the counter must not become an outage
    of the API, the inbox and the widget (a 500 on every request). Sign-in throttling is counted in
    the database and holds either way."""

    # Counts `hit_soon` sends in one round trip at most.
    MAX_PIPELINE = 256

    def __init__(self, url: str, prefix: str = "tertulia") -> None:
        self._redis = _client(url)
        self._prefix = prefix
        self._hit = self._redis.register_script(_HIT)
        self._waiting: queue.SimpleQueue[_WaitingHit | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int) -> int:
        return self.take(key, limit, window_seconds).retry_after

    def take(self, key: str, limit: int, window_seconds: int) -> Allowance:
        try:
            answer = self._hit(keys=[self._key(key)], args=self._args(limit, window_seconds))
        except redis.RedisError as exc:
            return _unavailable(exc, limit, window_seconds)
        return _allowance(answer, limit)

    def take_many(self, requests: Sequence[tuple[str, int, int]]) -> list[Allowance]:
        """`take` for each (key, limit, window seconds), in one pipelined round trip. EVALSHA goes
        straight into the pipeline: a script object there would ask SCRIPT EXISTS first, a second
        round trip each time. Counts that Redis refused for not knowing the script (it restarted,
        or its scripts were flushed) are sent again once it is loaded; the others were counted."""
        try:
            answers = self._evalsha_all(requests)
            missing = [n for n, answer in enumerate(answers) if isinstance(answer, redis.exceptions.NoScriptError)]
            if missing:
                self._redis.script_load(self._hit.script)
                for n, answer in zip(missing, self._evalsha_all([requests[n] for n in missing]), strict=True):
                    answers[n] = answer
        except redis.RedisError as exc:
            return [_unavailable(exc, limit, window) for _, limit, window in requests]
        return [
            _unavailable(answer, limit, window) if isinstance(answer, Exception) else _allowance(answer, limit)
            for answer, (_, limit, window) in zip(answers, requests, strict=True)
        ]

    def _evalsha_all(self, requests: Sequence[tuple[str, int, int]]) -> list[Any]:
        pipeline = self._redis.pipeline(transaction=False)
        for key, limit, window_seconds in requests:
            pipeline.evalsha(self._hit.sha, 1, self._key(key), *self._args(limit, window_seconds))
        return list(pipeline.execute(raise_on_error=False))

    async def hit_soon(self, key: str, limit: int, window_seconds: int) -> int:
        waiting = _WaitingHit(key, limit, window_seconds, asyncio.get_running_loop().create_future())
        self._start_sender()
        self._waiting.put(waiting)
        return await waiting.answer

    def close(self) -> None:
        with self._sender_lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            self._waiting.put(None)
            sender.join(timeout=5)

    def _start_sender(self) -> None:
        if self._sender is not None:
            return
        with self._sender_lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send, name="rate-limit-sender", daemon=True)
                self._sender.start()

    def _send(self) -> None:
        """Sends what waits in one round trip, then answers each waiting caller on its own loop."""
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.MAX_PIPELINE:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._waiting.put(None)  # stop after this round trip
                    break
                batch.append(item)
            try:
                allowances = self.take_many([(w.key, w.limit, w.window_seconds) for w in batch])
            except Exception as exc:  # the sender must survive anything, or every socket would hang
                log.exception("rate_limiter_sender_failed", error=str(exc))
                allowances = [Allowance(w.limit, w.limit, w.window_seconds, 0) for w in batch]
            answer_from_thread(
                (waiting.answer, allowance.retry_after) for waiting, allowance in zip(batch, allowances, strict=True)
            )

    def _key(self, key: str) -> str:
        # Not "rl:": the fixed-window counters kept strings under "rl:<key>:<window>"; a new name means
        # a process of the previous release, during a rolling upgrade, never meets a sorted set.
        return f"{self._prefix}:rl2:{key}"

    @staticmethod
    def _args(limit: int, window_seconds: int) -> list[int | str]:
        return [limit, window_seconds * 1000, uuid.uuid4().hex]


@dataclass(frozen=True)
class _WaitingHit:
    key: str
    limit: int
    window_seconds: int
    answer: "asyncio.Future[int]"


def _allowance(answer: Any, limit: int) -> Allowance:
    accepted, counted, oldest_ms = answer
    reset = _wait(int(oldest_ms) / 1000)
    if int(accepted):
        return Allowance(limit, max(0, limit - int(counted)), reset, 0)
    return Allowance(limit, 0, reset, reset)


def _unavailable(exc: BaseException, limit: int, window_seconds: int) -> Allowance:
    log.warning("rate_limiter_unavailable", error=str(exc))
    return Allowance(limit, limit, window_seconds, 0)


class MemorySlotLimiter:
    """Slots of this process; a socket always releases its slot when it ends, so no lease is needed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[str, set[str]] = defaultdict(set)

    def acquire(self, key: str, limit: int, holder: str) -> bool:
        with self._lock:
            holders = self._holders[key]
            if holder in holders:
                return True
            if len(holders) >= limit:
                return False
            holders.add(holder)
            return True

    def renew(self, key: str, holder: str) -> None:
        return None

    def release(self, key: str, holder: str) -> None:
        with self._lock:
            holders = self._holders.get(key)
            if holders is not None:
                holders.discard(holder)
                if not holders:
                    del self._holders[key]


# A sorted set per key: member = holder, score = when its lease ends (Redis's own clock, so the
# processes' clocks do not matter). Expired leases are dropped before counting.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]) + 1)
    return 1
end
return 0
"""
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return 1
"""


class RedisSlotLimiter:
    """Slots shared by every process. If Redis cannot be reached, a socket is let in (and the
    failure logged): a chat that works beats a cap that cannot be counted."""

    def __init__(self, url: str, prefix: str = "tertulia", lease_seconds: int = SLOT_LEASE_SECONDS) -> None:
        self._redis = _client(url)
        self._prefix = prefix
        self.lease_seconds = lease_seconds
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:slots:{key}"

    def acquire(self, key: str, limit: int, holder: str) -> bool:
        try:
            return bool(self._acquire(keys=[self._key(key)], args=[limit, holder, self.lease_seconds]))
        except redis.RedisError as exc:
            log.warning("slot_limiter_unavailable", error=str(exc))
            return True

    def renew(self, key: str, holder: str) -> None:
        try:
            self._renew(keys=[self._key(key)], args=[holder, self.lease_seconds])
        except redis.RedisError as exc:
            log.warning("slot_limiter_unavailable", error=str(exc))

    def release(self, key: str, holder: str) -> None:
        try:
            self._redis.zrem(self._key(key), holder)
        except redis.RedisError as exc:
            log.warning("slot_limiter_unavailable", error=str(exc))


# Requests wait on these calls: a Redis that does not answer must cost a second, not a TCP timeout.
REDIS_TIMEOUT_SECONDS = 1.0


def _client(url: str) -> "redis.Redis":
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def make_rate_limiter(url: str, prefix: str = "tertulia") -> RateLimiter:
    if _is_redis(url):
        return RedisRateLimiter(url, prefix)
    return MemoryRateLimiter()


def make_slot_limiter(url: str, prefix: str = "tertulia") -> SlotLimiter:
    if _is_redis(url):
        return RedisSlotLimiter(url, prefix)
    return MemorySlotLimiter()
