"""Who listens to what, in one place: the event-log consumers, the synchronous contact-merge
hooks and the hooks on customers' messages arriving. Every process calls `install()` once at start
(the app factory, the task registry, the CLI); nothing registers itself by being imported.

To add a consumer (outgoing webhooks, workflow triggers, report rollups, the bot): write it in its
domain as an `events.dispatcher.Consumer` and list it in EVENT_CONSUMERS.
"""

from tertulia.assistant import bot as assistant_bot
from tertulia.broadcasts import hooks as broadcast_hooks
from tertulia.broadcasts import service as broadcasts_service
from tertulia.contacts import hooks as contact_hooks
from tertulia.conversations import away
from tertulia.conversations import hooks as conversation_hooks
from tertulia.conversations.merge import move_conversations
from tertulia.events import dispatcher
from tertulia.events.dispatcher import Consumer
from tertulia.notifications import feed as notifications_feed
from tertulia.reports import rollups as reports_rollups
from tertulia.webhooks import fanout as webhooks_fanout
from tertulia.workflows import broadcast_replies as workflow_broadcast_replies
from tertulia.workflows import triggers as workflow_triggers

# Run inside the merge transaction, in this order.
MERGE_HOOKS: tuple[contact_hooks.MergeHook, ...] = (move_conversations, broadcasts_service.move_merged_contact)

# Run inside the receive transaction, after a batch of customers' messages is written: a reply to a
# broadcast within its reply window (broadcast.replied, once per recipient), an unsubscribe keyword;
# the away message when the workspace or the conversation's team is closed (once per closed period).
RECEIVED_HOOKS: tuple[conversation_hooks.ReceivedHook, ...] = (
    broadcasts_service.do_record_replies,
    away.send_away_messages,
)

# Fed from the event log by `events.tasks`, each from its own position.
EVENT_CONSUMERS: tuple[Consumer, ...] = (
    webhooks_fanout.CONSUMER,
    reports_rollups.CONSUMER,
    workflow_triggers.CONSUMER,
    notifications_feed.CONSUMER,
    assistant_bot.CONSUMER,
)


def install() -> None:
    """Idempotent; consumers registered through `dispatcher.register` (tests) are kept."""
    contact_hooks.set_merge_hooks(MERGE_HOOKS)
    conversation_hooks.set_received_hooks(RECEIVED_HOOKS)
    # The workflows a broadcast may name to run for each contact who replies.
    broadcast_hooks.set_reply_workflows(workflow_broadcast_replies.reply_workflows)
    for consumer in EVENT_CONSUMERS:
        dispatcher.register(consumer)
