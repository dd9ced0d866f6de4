"""Queued work of broadcasts: starting a scheduled one at its time, and sending (the pump).

- `broadcasts.start` is queued for the broadcast's time when it is scheduled (huey's eta); the
  periodic `broadcasts.sweep` starts any due one whose task was lost, and queues a pump for every
  sending broadcast (a pump lost with a killed worker), so a restart resumes where it stopped.
- `broadcasts.pump` sends one tick's share and queues itself again while recipients wait. Several
  pumps of one broadcast may run at once (a sweep's and its own, on several workers): they claim
  disjoint recipients (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's one writer), so the only cost
  of a duplicate is a smaller batch each.
"""

from datetime import datetime

import structlog
from huey import crontab

from tertulia.broadcasts import sender
from tertulia.kit.clock import utcnow
from tertulia.kit.queue import huey, task_database

log = structlog.get_logger("tertulia.broadcasts")

# Waiting for the outbox to finish the last messages before completing.
FINISHING_DELAY = 5.0


@huey.task(name="broadcasts.start")  # type: ignore[untyped-decorator]
def start_task(broadcast_id: int) -> str:
    outcome = sender.start(task_database(), broadcast_id)
    if outcome == "started":
        enqueue_pump(broadcast_id)
    elif outcome == "early":  # the queue's clock ran ahead of the database's time: a moment later
        start_task.schedule(args=(broadcast_id,), delay=1.0)
    return outcome


@huey.task(name="broadcasts.pump")  # type: ignore[untyped-decorator]
def pump_task(broadcast_id: int) -> str:
    tick = sender.pump(task_database(), broadcast_id)
    if tick.state == "more":
        pump_task.schedule(args=(broadcast_id,), delay=sender.TICK_SECONDS)
    elif tick.state == "finishing":
        pump_task.schedule(args=(broadcast_id,), delay=FINISHING_DELAY)
    return tick.state


def enqueue_start(broadcast_id: int, eta: datetime) -> None:
    try:
        if eta <= utcnow():
            start_task(broadcast_id)
        else:
            start_task.schedule(args=(broadcast_id,), eta=eta)
    except Exception as exc:  # the periodic sweep starts it
        log.warning("broadcast_start_enqueue_failed", broadcast_id=broadcast_id, error=str(exc))


def enqueue_pump(broadcast_id: int) -> None:
    try:
        pump_task(broadcast_id)
    except Exception as exc:  # the periodic sweep queues it
        log.warning("broadcast_pump_enqueue_failed", broadcast_id=broadcast_id, error=str(exc))


def sweep() -> int:
    """Start due scheduled broadcasts and queue a pump for each sending one."""
    database = task_database()
    due, sending = sender.due_and_sending(database)
    for broadcast_id in due:
        enqueue_start_now(broadcast_id)
    for broadcast_id in sending:
        enqueue_pump(broadcast_id)
    return len(due) + len(sending)


def enqueue_start_now(broadcast_id: int) -> None:
    try:
        start_task(broadcast_id)
    except Exception as exc:
        log.warning("broadcast_start_enqueue_failed", broadcast_id=broadcast_id, error=str(exc))


@huey.periodic_task(crontab(minute="*"), name="broadcasts.sweep")  # type: ignore[untyped-decorator]
def sweep_task() -> int:
    return sweep()
