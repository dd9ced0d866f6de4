"""Webhook delivery on the job queue.

- `webhooks.deliver` sends what is due until nothing is (or for 10 s), then schedules itself for the
  earliest waiting retry. It is queued after the fan-out writes deliveries (`nudge`, coalesced per
  process), after a redelivery or test event, and when an endpoint is enabled again.
- `webhooks.deliver_due` (every minute) does the same for nudges lost with a dead process, and for
  deliveries whose worker died mid-send (their lease expired).
- `webhooks.prune_log` (hourly) deletes finished deliveries older than
  `TERTULIA_WEBHOOKS_LOG_RETENTION_DAYS` with their attempts.
"""

import time

import structlog
from huey import crontab

from tertulia.kit.nudges import Nudger
from tertulia.kit.queue import huey, task_database
from tertulia.kit.settings import get_settings
from tertulia.webhooks import delivery

log = structlog.get_logger("tertulia.webhooks")

NUDGE_EVERY_SECONDS = 0.05
BUDGET_SECONDS = 10.0


def nudge() -> None:
    """Ask for a delivery run soon (at most one enqueue per NUDGE_EVERY_SECONDS, plus a trailing one)."""
    _nudger.nudge()


def run() -> int:
    db = task_database()
    started = time.monotonic()
    attempted = delivery.deliver_until_idle(db, budget_seconds=BUDGET_SECONDS)
    if huey.immediate:
        return attempted
    if time.monotonic() - started >= BUDGET_SECONDS:
        _nudger.follow_up(0.1)  # stopped for its budget, not because nothing was due
    else:
        wait = delivery.seconds_until_next(db)
        if wait is not None:
            _nudger.follow_up(wait)
    return attempted


@huey.task(name="webhooks.deliver")  # type: ignore[untyped-decorator]
def deliver_task() -> int:
    return run()


@huey.periodic_task(crontab(minute="*"), name="webhooks.deliver_due")  # type: ignore[untyped-decorator]
def deliver_due_task() -> int:
    return run()


@huey.periodic_task(crontab(minute="41"), name="webhooks.prune_log")  # type: ignore[untyped-decorator]
def prune_log_task() -> int:
    return delivery.prune_log(task_database(), get_settings().webhooks_log_retention_days)


# After the tasks it queues; the functions above look it up when they run.
_nudger = Nudger(
    "webhooks.deliver", deliver_task, lambda delay: deliver_task.schedule(delay=delay), NUDGE_EVERY_SECONDS
)
