"""Fixed-window request counters: in-process by default, Redis when several processes share limits."""

import threading
import time
from typing import Protocol

import redis


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window_seconds: int) -> int:
        """Count one request; return 0 if allowed, else seconds until the window resets."""
        ...


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}

    def hit(self, key: str, limit: int, window_seconds: int) -> int:
        now = int(time.time())
        window = now - now % window_seconds
        with self._lock:
            start, count = self._windows.get(key, (window, 0))
            if start != window:
                start, count = window, 0
            count += 1
            self._windows[key] = (start, count)
        return 0 if count <= limit else start + window_seconds - now


class RedisRateLimiter:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)

    def hit(self, key: str, limit: int, window_seconds: int) -> int:
        now = int(time.time())
        window = now - now % window_seconds
        redis_key = f"tertulia:rl:{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(redis_key)
        pipe.expire(redis_key, window_seconds + 1)
        count = int(pipe.execute()[0])
        return 0 if count <= limit else window + window_seconds - now


def make_rate_limiter(url: str) -> RateLimiter:
    if url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(url)
    return MemoryRateLimiter()
