"""The mail outbox on the queue: one task per committed email, and a periodic retry of the rest.

`deliver_task` is queued after the transaction that wrote the email commits. Whatever it did not
send (the enqueue lost in a crash, SMTP down, a worker killed mid-send) stays unsent in the table and
`deliver_pending_task` sends it once due, every minute, on whichever consumer runs the scheduler.
"""

from collections.abc import Sequence

import structlog
from huey import crontab

from tertulia.kit.queue import huey, task_database
from tertulia.mail.delivery import deliver, deliver_pending

log = structlog.get_logger("tertulia.mail")


@huey.task(name="mail.deliver")  # type: ignore[untyped-decorator]
def deliver_task(ids: list[int]) -> int:
    return deliver(task_database(), ids)


def enqueue_delivery(ids: Sequence[int]) -> None:
    try:
        deliver_task(list(ids))
    except Exception:  # the rows stay unsent; deliver_pending_task picks them up
        log.exception("email_enqueue_failed", ids=list(ids))


@huey.periodic_task(crontab(minute="*"), name="mail.deliver_pending")  # type: ignore[untyped-decorator]
def deliver_pending_task() -> int:
    return deliver_pending(task_database())
