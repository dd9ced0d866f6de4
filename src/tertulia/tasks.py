"""The one registry of background work: every queued and periodic task, and what a consumer does
when it starts; it also installs the event consumers and merge hooks (`tertulia.consumers`). Both
consumers import this: the one embedded in `tertulia serve` and `tertulia worker`.

Tasks (name, module, what queues it):
- `conversations.send_message` (conversations.outbox): a reply or note to deliver; after commit.
- `conversations.process_callbacks` (conversations.ingress.callbacks): stored provider callbacks to
  parse and write; after the callback rows commit.
- `contacts.run_import` (contacts.tasks): a CSV import; after the job is started.
- `mail.deliver` (mail.tasks): an email of the outbox; after commit.
- `segments.refresh_counts` (segments.tasks): a workspace's ageing segment counts; after a read.
- `broadcasts.start` (broadcasts.tasks): a scheduled broadcast, at its time; `broadcasts.pump`: one
  tick of a sending broadcast's messages, queued again while recipients wait.
- `channels.sync_templates` (channels.tasks): a channel's message templates read from its provider;
  after a channel is connected, or a manager asks.
- `notifications.send_emails` (notifications.tasks): notification emails of people away or offline;
  after notifications that want one are written.
- `webhooks.deliver` (webhooks.tasks): webhook deliveries that are due; after the event-log consumer
  writes them, a redelivery or a test event.
- `workflows.advance` (workflows.tasks): workflow runs that are due; after the trigger consumer
  starts runs or hands them what a contact wrote.
- `reports.run_export` (reports.export_tasks): a data export (Settings > Data export); after it is
  requested.
- `reports.rebuild` (reports.export_tasks): the batches of a report data rebuild (Settings > Data
  export); after it is started.
Periodic (every minute unless said): `conversations.requeue_stuck_outbound`, `conversations.prune_paces`
(every 10 minutes),
`conversations.sweep_unsent_uploads` (hourly), `contacts.requeue_interrupted_imports`,
`conversations.sweep_callbacks`, `conversations.auto_close` (open conversations past the workspace's
auto-close inactivity are closed), `broadcasts.sweep` (due broadcasts started, sending ones
pumped), `conversations.fetch_mailboxes` (email channels whose poll interval has passed),
`conversations.flush_stale_sms_parts` (every 5 minutes: long SMS
still missing parts after 30 minutes), `mail.deliver_pending`, `channels.sync_all_templates` (every six
hours), `webhooks.deliver_due`, `webhooks.prune_log` (hourly), `workflows.sweep` (runs whose wait
ended or whose worker died), `workflows.date_sweep` (date triggers whose time came),
`reports.sweep_exports` (interrupted data exports queued again, expired export files removed),
`notifications.send_emails_due` (emails of people gone away since, and
digests come due), `assistant.release_stale_reservations` (every 5 minutes: language-model token
reservations a dead process never settled), and the event log's dispatcher and pruning (`events.tasks`).

At consumer start (before it takes work), what a crashed process left behind is queued again:
pending outgoing messages with no task waiting, queued or interrupted imports and data exports, and broadcasts due
or still sending. A task a dead
consumer had taken off the queue is gone from it; the database still says what is to do.
When a consumer is asked to stop, running imports are handed back to the queue after their batch.

Beside its workers, a consumer runs the email channels' watchers (`conversations.ingress.mailbox.
MailWatchers`: IMAP IDLE or reading every poll_seconds, one per mailbox across processes); they
start with it and stop with it.
"""

from tertulia import consumers
from tertulia.assistant import tasks as assistant_tasks
from tertulia.broadcasts import tasks as broadcasts_tasks
from tertulia.channels import tasks as channels_tasks
from tertulia.contacts import import_runner
from tertulia.contacts import tasks as contacts_tasks
from tertulia.conversations import autoclose as conversations_autoclose
from tertulia.conversations import outbox as conversations_outbox
from tertulia.conversations.ingress import callbacks as conversations_callbacks
from tertulia.conversations.ingress import mailbox as conversations_mailbox
from tertulia.events import tasks as events_tasks
from tertulia.kit import queue
from tertulia.mail import tasks as mail_tasks
from tertulia.notifications import tasks as notifications_tasks
from tertulia.reports import export_tasks as reports_export_tasks
from tertulia.segments import tasks as segments_tasks
from tertulia.webhooks import tasks as webhooks_tasks
from tertulia.workflows import dates as workflows_dates
from tertulia.workflows import tasks as workflows_tasks

consumers.install()

__all__ = [
    "assistant_tasks",
    "broadcasts_tasks",
    "channels_tasks",
    "contacts_tasks",
    "conversations_autoclose",
    "conversations_callbacks",
    "conversations_mailbox",
    "conversations_outbox",
    "events_tasks",
    "mail_tasks",
    "notifications_tasks",
    "reports_export_tasks",
    "segments_tasks",
    "webhooks_tasks",
    "workflows_dates",
    "workflows_tasks",
]


def _requeue_interrupted_imports() -> int:
    import_runner.accept_runs()
    return contacts_tasks.requeue_interrupted_imports(at_start=True)


queue.at_consumer_start(conversations_outbox.requeue_pending_outbound)
queue.at_consumer_start(_requeue_interrupted_imports)
queue.at_consumer_start(broadcasts_tasks.sweep)
queue.at_consumer_start(reports_export_tasks.requeue_at_start)
queue.at_consumer_start(workflows_tasks.sweep)
queue.at_consumer_start(conversations_mailbox.start_process_watchers)
queue.at_consumer_stop(import_runner.release_running_imports)
queue.at_consumer_stop(conversations_mailbox.stop_process_watchers)
