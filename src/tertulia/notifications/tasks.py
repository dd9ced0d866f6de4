"""Notification emails on the queue.

- `notifications.send_emails` (emails.send_due): queued after a transaction writes notifications
  that want an email; and every minute, for people who have gone away or offline since, and digests
  that have come due.
"""

import structlog
from huey import crontab

from tertulia.kit.clock import utcnow
from tertulia.kit.queue import huey, task_database
from tertulia.kit.settings import get_settings
from tertulia.notifications import emails, waiting

log = structlog.get_logger("tertulia.notifications")


def run() -> int:
    return emails.send_due(task_database(), utcnow(), get_settings().base_url)


@huey.task(name="notifications.send_emails")  # type: ignore[untyped-decorator]
def send_emails_task() -> int:
    return run()


@huey.periodic_task(crontab(minute="*"), name="notifications.send_emails_due")  # type: ignore[untyped-decorator]
def send_emails_due_task() -> int:
    return run()


@huey.periodic_task(crontab(minute="*"), name="notifications.notify_waiting")  # type: ignore[untyped-decorator]
def notify_waiting_task() -> int:
    return waiting.notify_waiting(task_database(), utcnow(), queue_emails)


def queue_emails() -> None:
    try:
        send_emails_task()
    except Exception:  # the rows stay pending; the periodic task sends them
        log.exception("notification_emails_enqueue_failed")
