"""The dispatcher on the job queue.

- `nudge()` runs after every commit that wrote events (when consumers are registered): it enqueues
  `events.dispatch`, at most once per NUDGE_EVERY_SECONDS per process, with one trailing enqueue
  for the commits that arrived in between, so a burst of commits costs a few tasks, not one each.
- `events.dispatch` feeds every consumer up to the horizon, again while there is more, and
  schedules a follow-up when a consumer is waiting for its retry or events are not settled yet.
- `events.catch_up` (every minute) does the same, for nudges lost with a process that died between
  its commit and its enqueue; `events.prune` (hourly) applies TERTULIA_EVENT_RETENTION_DAYS.

Consumers are registered by `tertulia.consumers.install()`, which every process calls at start.
"""

import threading
import time

import structlog
from huey import crontab

from tertulia.events import dispatcher
from tertulia.kit.queue import huey, task_database
from tertulia.kit.settings import get_settings

log = structlog.get_logger("tertulia.events")

NUDGE_EVERY_SECONDS = 0.05
# One dispatch task stops after this long so one busy consumer cannot hold a worker thread forever.
DISPATCH_BUDGET_SECONDS = 10.0
UNSETTLED_RETRY_SECONDS = 1.0

_nudge_lock = threading.Lock()
_last_nudge = float("-inf")
_trailing: threading.Timer | None = None
_follow_up_at = float("-inf")


def has_consumers() -> bool:
    return bool(dispatcher.registered())


def nudge() -> None:
    """Ask for a dispatch soon (coalesced per process)."""
    global _last_nudge, _trailing
    with _nudge_lock:
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
    with _nudge_lock:
        _trailing = None
        _last_nudge = time.monotonic()
    _enqueue()


def _enqueue() -> None:
    try:
        dispatch_task()
    except Exception as exc:  # the periodic catch-up delivers them
        log.warning("events_nudge_failed", error=str(exc))


def _follow_up(delay: float) -> None:
    """Schedule one dispatch in `delay` seconds unless one is already due before then."""
    global _follow_up_at
    due = time.monotonic() + delay
    with _nudge_lock:
        if _follow_up_at > time.monotonic() and _follow_up_at <= due:
            return
        _follow_up_at = due
    try:
        dispatch_task.schedule(delay=max(delay, 0.1))
    except Exception as exc:
        log.warning("events_follow_up_failed", error=str(exc))


def dispatch_until_idle(budget_seconds: float = DISPATCH_BUDGET_SECONDS) -> int:
    db = task_database()
    deadline = time.monotonic() + budget_seconds
    delivered = 0
    while True:
        report = dispatcher.dispatch(db)
        delivered += report.delivered
        if report.delivered == 0 or time.monotonic() >= deadline:
            break
    if report.retry_in is not None:
        _follow_up(report.retry_in)
    if report.unsettled or report.delivered:
        _follow_up(UNSETTLED_RETRY_SECONDS)
    return delivered


@huey.task(name="events.dispatch")  # type: ignore[untyped-decorator]
def dispatch_task() -> int:
    return dispatch_until_idle()


@huey.periodic_task(crontab(minute="*"), name="events.catch_up")  # type: ignore[untyped-decorator]
def catch_up() -> int:
    return dispatch_until_idle()


@huey.periodic_task(crontab(minute="23"), name="events.prune")  # type: ignore[untyped-decorator]
def prune_task() -> int:
    return dispatcher.prune(task_database(), get_settings().event_retention_days)
