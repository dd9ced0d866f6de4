"""The one registry of background work: every queued and periodic task, and what a consumer does
when it starts; it also installs the event consumers and merge hooks (`tertulia.consumers`). Both
consumers import this: the one embedded in `tertulia serve` and `tertulia worker`.

Tasks (name, module, what queues it):
- `conversations.send_message` (conversations.tasks): a reply or note to deliver; after commit.
- `contacts.run_import` (contacts.tasks): a CSV import; after the job is started.
- `mail.deliver` (mail.tasks): an email of the outbox; after commit.
- `segments.refresh_counts` (segments.tasks): a workspace's ageing segment counts; after a read.
Periodic (every minute unless said): `conversations.requeue_stuck_outbound`,
`conversations.sweep_unsent_uploads` (hourly), `contacts.requeue_interrupted_imports`,
`mail.deliver_pending`, and the event log's dispatcher and pruning (`events.tasks`).

At consumer start (before it takes work), what a crashed process left behind is queued again:
pending outgoing messages with no task waiting, and queued or interrupted imports. A task a dead
consumer had taken off the queue is gone from it; the database still says what is to do.
When a consumer is asked to stop, running imports are handed back to the queue after their batch.
"""

from sqlalchemy import select

from tertulia import consumers
from tertulia.contacts import import_runner
from tertulia.contacts import tasks as contacts_tasks
from tertulia.conversations import tasks as conversations_tasks
from tertulia.conversations.models import DeliveryStatus, Direction, Message
from tertulia.events import tasks as events_tasks
from tertulia.kit import queue
from tertulia.mail import tasks as mail_tasks
from tertulia.segments import tasks as segments_tasks

consumers.install()

__all__ = [
    "contacts_tasks",
    "conversations_tasks",
    "events_tasks",
    "mail_tasks",
    "requeue_pending_outbound",
    "segments_tasks",
]


def _queued_message_ids() -> set[int]:
    """Ids of messages whose send task is waiting in the queue or its schedule (retries)."""
    waiting: set[int] = set()
    for task in [*queue.huey.pending(), *queue.huey.scheduled()]:
        if task.name == conversations_tasks.send_message_task.name and task.args:
            waiting.add(int(task.args[0]))
    return waiting


def requeue_pending_outbound() -> int:
    """Queue every pending outgoing message whose task is not waiting in the queue: its enqueue was
    lost with the process, or a worker took it and died. Without this they waited for the
    15-minute stuck sweep. A message another live worker is sending right now may be queued twice;
    the send carries the same idempotency key, as with the periodic sweep."""
    try:
        waiting = _queued_message_ids()
    except Exception:  # a backend that cannot list its queue: queue them all, sends are idempotent
        waiting = set()
    with queue.task_database().transaction(write=False) as session:
        ids = list(
            session.scalars(
                select(Message.id)
                .where(Message.status == DeliveryStatus.PENDING, Message.direction == Direction.OUTGOING)
                .order_by(Message.id)
            )
        )
    requeued = [message_id for message_id in ids if message_id not in waiting]
    for message_id in requeued:
        conversations_tasks.enqueue_send(message_id)
    return len(requeued)


def _requeue_interrupted_imports() -> int:
    import_runner.accept_runs()
    return contacts_tasks.requeue_interrupted_imports(at_start=True)


queue.at_consumer_start(requeue_pending_outbound)
queue.at_consumer_start(_requeue_interrupted_imports)
queue.at_consumer_stop(import_runner.release_running_imports)
