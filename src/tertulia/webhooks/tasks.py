"""Webhook delivery on the job queue.

- `webhooks.deliver` sends what is due until nothing is (or for 10 s), then schedules itself for the
  earliest waiting retry. It is queued after the fan-out writes deliveries (`nudge`, coalesced per
  process), after a redelivery or test event, and when an endpoint is enabled again.
- `webhooks.deliver_due` (every minute) does the same for nudges lost with a dead process, and for
  deliveries whose worker died mid-send (their lease expired).
"""

import threading
import time

import structlog
from huey import crontab

from tertulia.kit.queue import huey, task_database
from tertulia.webhooks import delivery

log = structlog.get_logger("tertulia.webhooks")

NUDGE_EVERY_SECONDS = 0.05
BUDGET_SECONDS = 10.0

_lock = threading.Lock()
_last_nudge = float("-inf")
_trailing: threading.Timer | None = None
_follow_up_at = float("-inf")


def nudge() -> None:
    """Ask for a delivery run soon (at most one enqueue per NUDGE_EVERY_SECONDS, plus a trailing one)."""
    global _last_nudge, _trailing
    with _lock:
        now = time.monotonic()
        wait = _last_nudge + NUDGE_EVERY_SECONDS - now
        if wait > 0:
            if _trailing is None:
                _trailing = threading.Timer(wait, _trailing_nudge)
                _trailing.daemon = True
                _trailing.start()
            return
        _last_nudge = now
    _enqueue()


def _trailing_nudge() -> None:
    global _last_nudge, _trailing
    with _lock:
        _trailing = None
        _last_nudge = time.monotonic()
    _enqueue()


def _enqueue() -> None:
    try:
        deliver_task()
    except Exception as exc:  # the periodic run delivers them
        log.warning("webhooks_nudge_failed", error=str(exc))


def _follow_up(delay: float) -> None:
    global _follow_up_at
    due = time.monotonic() + delay
    with _lock:
        if time.monotonic() < _follow_up_at <= due:
            return
        _follow_up_at = due
    try:
        deliver_task.schedule(delay=max(delay, 0.1))
    except Exception as exc:
        log.warning("webhooks_follow_up_failed", error=str(exc))


def run() -> int:
    db = task_database()
    started = time.monotonic()
    attempted = delivery.deliver_until_idle(db, budget_seconds=BUDGET_SECONDS)
    if huey.immediate:
        return attempted
    if time.monotonic() - started >= BUDGET_SECONDS:
        _follow_up(0.1)  # stopped for its budget, not because nothing was due
    else:
        wait = delivery.seconds_until_next(db)
        if wait is not None:
            _follow_up(wait)
    return attempted


@huey.task(name="webhooks.deliver")  # type: ignore[untyped-decorator]
def deliver_task() -> int:
    return run()


@huey.periodic_task(crontab(minute="*"), name="webhooks.deliver_due")  # type: ignore[untyped-decorator]
def deliver_due_task() -> int:
    return run()
