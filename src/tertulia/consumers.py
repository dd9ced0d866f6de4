"""Who listens to what, in one place: the event-log consumers and the synchronous contact-merge
hooks. Every process calls `install()` once at start (the app factory, the task registry, the CLI);
nothing registers itself by being imported.

To add a consumer (outgoing webhooks, workflow triggers, report rollups, the bot): write it in its
domain as an `events.dispatcher.Consumer` and list it in EVENT_CONSUMERS.
"""

from tertulia.contacts import hooks as contact_hooks
from tertulia.conversations.merge import move_conversations
from tertulia.events import dispatcher
from tertulia.events.dispatcher import Consumer
from tertulia.webhooks import fanout as webhooks_fanout

# Run inside the merge transaction, in this order.
MERGE_HOOKS: tuple[contact_hooks.MergeHook, ...] = (move_conversations,)

# Fed from the event log by `events.tasks`, each from its own position.
EVENT_CONSUMERS: tuple[Consumer, ...] = (webhooks_fanout.CONSUMER,)


def install() -> None:
    """Idempotent; consumers registered through `dispatcher.register` (tests) are kept."""
    contact_hooks.set_merge_hooks(MERGE_HOOKS)
    for consumer in EVENT_CONSUMERS:
        dispatcher.register(consumer)
