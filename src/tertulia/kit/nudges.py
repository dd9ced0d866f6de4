"""Coalesced requests for a queued task: after every commit a process may ask for a run of a task
(the event dispatcher, webhook delivery); a burst of commits must cost a few tasks, not one each."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger("tertulia.kit")


class Nudger:
    """`nudge()` enqueues at most once per `every_seconds` in this process, plus one trailing enqueue for
    the nudges that came in between; `follow_up(delay)` schedules one run in `delay` seconds unless one
    is already due before then. Failures to enqueue are logged: a periodic task catches up."""

    def __init__(
        self,
        name: str,
        enqueue: Callable[[], object],
        schedule: Callable[[float], object],
        every_seconds: float = 0.05,
    ) -> None:
        self._name = name
        self._enqueue_task = enqueue
        self._schedule_task = schedule
        self._every = every_seconds
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._trailing: threading.Timer | None = None
        self._follow_up_at = float("-inf")
        self._paused = 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No run is asked for while the block runs, and a trailing one still waiting is dropped: for
        code that drives the task's work by hand and must not meet a run on a timer thread."""
        with self._lock:
            self._paused += 1
            if self._trailing is not None:
                self._trailing.cancel()
                self._trailing = None
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    def nudge(self) -> None:
        with self._lock:
            if self._paused:
                return
            now = time.monotonic()
            wait = self._last + self._every - now
            if wait > 0:
                if self._trailing is None:
                    self._trailing = threading.Timer(wait, self._trailing_nudge)
                    self._trailing.daemon = True
                    self._trailing.start()
                return
            self._last = now
        self._enqueue()

    def follow_up(self, delay: float) -> None:
        due = time.monotonic() + delay
        with self._lock:
            if self._paused or time.monotonic() < self._follow_up_at <= due:
                return
            self._follow_up_at = due
        try:
            self._schedule_task(max(delay, 0.1))
        except Exception as exc:
            log.warning("follow_up_failed", task=self._name, error=str(exc))

    def _trailing_nudge(self) -> None:
        with self._lock:
            self._trailing = None
            self._last = time.monotonic()
            if self._paused:
                return
        self._enqueue()

    def _enqueue(self) -> None:
        try:
            self._enqueue_task()
        except Exception as exc:  # the task's periodic run catches up
            log.warning("nudge_failed", task=self._name, error=str(exc))
