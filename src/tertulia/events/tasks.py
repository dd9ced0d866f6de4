"""The dispatcher on the job queue.

- `nudge()` runs after every commit that wrote events (when consumers are registered): it enqueues
  `events.dispatch`, at most once per NUDGE_EVERY_SECONDS per process, with one trailing enqueue
  for the commits that arrived in between, so a burst of commits costs a few tasks, not one each.
- `events.dispatch` feeds every consumer up to the horizon, again while there is more, and
  schedules a follow-up when a consumer is waiting for its retry or events are not settled yet.
  One thread per process dispatches at a time; the others wait for its pass instead of taking the
  same leases.
- `events.catch_up` (every minute) does the same, for nudges lost with a process that died between
  its commit and its enqueue; `events.prune` (hourly) applies TERTULIA_EVENT_RETENTION_DAYS.

Consumers are registered by `tertulia.consumers.install()`, which every process calls at start.
"""

import threading
import time
from contextlib import AbstractContextManager

import structlog
from huey import crontab

from tertulia.events import dispatcher
from tertulia.kit.nudges import Nudger
from tertulia.kit.queue import huey, task_database
from tertulia.kit.settings import get_settings

log = structlog.get_logger("tertulia.events")

NUDGE_EVERY_SECONDS = 0.05
# One dispatch task stops after this long so one busy consumer cannot hold a worker thread forever.
DISPATCH_BUDGET_SECONDS = 10.0
UNSETTLED_RETRY_SECONDS = 1.0

# Reentrant: with an immediate queue (tests) a consumer's commit runs its nudge's dispatch inline.
_dispatching = threading.RLock()
# Set by every request for a pass, cleared by the thread that starts one.
_asked = threading.Event()


def has_consumers() -> bool:
    return bool(dispatcher.registered())


def nudge() -> None:
    """Ask for a dispatch soon (coalesced per process)."""
    _nudger.nudge()


def nudges_paused() -> AbstractContextManager[None]:
    """No dispatch is asked for by this process's commits while the block runs (tests that feed
    consumers by hand)."""
    return _nudger.paused()


def dispatch_until_idle(budget_seconds: float = DISPATCH_BUDGET_SECONDS) -> int:
    """Feed the consumers until nothing is left; when it returns, a pass that started after the call
    has ended. One thread of a process dispatches at a time: others wait for its pass, which goes
    round once more for the requests made meanwhile, so they usually find nothing left to do. Two
    passes at once would only contend for the same consumers' leases (each failed take is a write
    transaction), and a worker's threads run the nudges of every process."""
    deadline = time.monotonic() + budget_seconds
    _asked.set()
    if not _dispatching.acquire(timeout=budget_seconds):
        return 0  # the request stands: the thread dispatching goes round for it
    delivered = 0
    try:
        while _asked.is_set():
            if time.monotonic() >= deadline:
                _nudger.follow_up(0.0)  # a later task takes the request still standing
                break
            _asked.clear()
            delivered += _dispatch_until_idle(deadline)
    finally:
        _dispatching.release()
    return delivered


def _dispatch_until_idle(deadline: float) -> int:
    db = task_database()
    delivered = 0
    while True:
        report = dispatcher.dispatch(db)
        delivered += report.delivered
        if report.delivered == 0 or time.monotonic() >= deadline:
            break
    if report.retry_in is not None:
        _nudger.follow_up(report.retry_in)
    if report.unsettled or report.delivered:
        _nudger.follow_up(UNSETTLED_RETRY_SECONDS)
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


# After the tasks it queues; the functions above look it up when they run.
_nudger = Nudger(
    "events.dispatch", dispatch_task, lambda delay: dispatch_task.schedule(delay=delay), NUDGE_EVERY_SECONDS
)
