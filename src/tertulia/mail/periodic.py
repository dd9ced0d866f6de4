"""The mail outbox's safety net on the queue: retries whatever after-commit delivery did not send."""

from huey import crontab

from tertulia.kit.queue import huey, task_database
from tertulia.mail.tasks import deliver_pending


@huey.periodic_task(crontab(minute="*"), name="mail.deliver_pending")  # type: ignore[untyped-decorator]
def deliver_pending_task() -> int:
    return deliver_pending(task_database())
