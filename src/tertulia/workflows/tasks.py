"""Workflow runs on the job queue.

- `workflows.advance` processes due runs until none is (or for 10 s), then schedules itself for the
  next due time. It is queued after the trigger consumer starts runs or hands them a message.
- `workflows.sweep` (every minute) does the same for nudges lost with a dead process, for waits that
  end, and for runs whose worker died mid-request (their lease, `due_at`, passed).
"""

import time
from contextlib import AbstractContextManager

from huey import crontab

from tertulia.kit.nudges import Nudger
from tertulia.kit.queue import huey, task_database
from tertulia.workflows import queue, runner

NUDGE_EVERY_SECONDS = 0.05
BUDGET_SECONDS = 10.0


def nudge() -> None:
    """Ask for a run of `workflows.advance` soon (coalesced per process)."""
    _nudger.nudge()


def nudges_paused() -> AbstractContextManager[None]:
    """No advance is asked for by this process's commits while the block runs (tests that run the
    runner by hand)."""
    return _nudger.paused()


def run() -> int:
    db = task_database()
    started = time.monotonic()
    turns = runner.run_due(db, budget_seconds=BUDGET_SECONDS)
    if huey.immediate:
        return turns
    if time.monotonic() - started >= BUDGET_SECONDS:
        _nudger.follow_up(0.1)
    else:
        wait = runner.seconds_until_next(db)
        if wait is not None and wait < 60:
            _nudger.follow_up(wait)
    return turns


@huey.task(name="workflows.advance")  # type: ignore[untyped-decorator]
def advance_task() -> int:
    return run()


@huey.periodic_task(crontab(minute="*"), name="workflows.sweep")  # type: ignore[untyped-decorator]
def sweep_task() -> int:
    wake_queue_after_presence()
    return run()


def wake_queue_after_presence() -> int:
    """Queued assignments get another try where an agent came online since (not an event: see queue.py)."""
    with task_database().transaction() as session:
        return queue.wake_after_presence(session)


def sweep() -> int:
    """At consumer start: runs a crashed process left due."""
    return run()


_nudger = Nudger(
    "workflows.advance", advance_task, lambda delay: advance_task.schedule(delay=delay), NUDGE_EVERY_SECONDS
)
