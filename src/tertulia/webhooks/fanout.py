"""The event-log consumer: each event an endpoint subscribes to becomes a delivery row per endpoint.

It runs in the dispatcher's order (one event at a time, in id order), so deliveries of one endpoint
are written in event order and their ids keep it. Fed twice (the log is at least once), an event
makes no second delivery: (endpoint, message id) is unique. Only enabled endpoints get deliveries.
"""

from typing import Any

from tertulia.events.dispatcher import Consumer
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database, on_commit
from tertulia.kit.queue import task_database
from tertulia.webhooks import repository, tasks
from tertulia.webhooks.catalogue import LOG_TYPES, webhook_events
from tertulia.webhooks.models import DeliveryState
from tertulia.webhooks.payloads import envelope, event_data, message_id

CONSUMER_NAME = "webhooks"
CHANNEL_EVENTS = frozenset({EventType.CHANNEL_ERRORED, EventType.CHANNEL_RECOVERED})


def ordering_key(event: EventRecord) -> str | None:
    if event.type in CHANNEL_EVENTS:
        # A channel's errored and recovered arrive in the order they happened.
        return f"channel:{event.payload.get('channel_id')}"
    if event.contact_id is not None:
        return f"contact:{event.contact_id}"
    if event.conversation_id is not None:
        return f"conversation:{event.conversation_id}"
    return None


def fan_out(db: Database, event: EventRecord) -> int:
    """Write the deliveries of `event`; how many."""
    names = webhook_events(event.type, event.payload)
    if not names:
        return 0
    with db.transaction(write=False) as session:
        wanted = any(
            name in (endpoint.events or [])
            for endpoint in repository.enabled_endpoints(session, event.workspace_id)
            for name in names
        )
    if not wanted:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    with db.transaction() as session:
        endpoints = repository.enabled_endpoints(session, event.workspace_id)
        for index, name in enumerate(names):
            targets = [e for e in endpoints if name in (e.events or [])]
            if not targets:
                continue
            message = message_id(event.id, name, primary=index == 0)
            body = envelope(message, name, event.created_at, event.workspace_id, event_data(session, event, name))
            rows.extend(
                {
                    "workspace_id": event.workspace_id,
                    "endpoint_id": endpoint.id,
                    "event_id": event.id,
                    "message_id": message,
                    "event_type": name,
                    "ordering_key": ordering_key(event),
                    "body": body,
                    "state": DeliveryState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for endpoint in targets
            )
        repository.insert_deliveries(session, rows)
        on_commit(session, tasks.nudge)
    return len(rows)


def handle(event: EventRecord) -> None:
    fan_out(task_database(), event)


def handle_batch(events: list[EventRecord]) -> None:
    """A dispatcher's read at once: one query finds what the batch's workspaces subscribe to, and only
    the events someone wants are fanned out (in order, one by one). Most events have no subscriber (no
    endpoint, or none for that name); each cost a transaction of its own to learn it, two per message
    an outbox sends. Fanning out is idempotent, so a batch retried one by one after a failure part
    way through writes no delivery twice."""
    db = task_database()
    with db.transaction(write=False) as session:
        subscribed = repository.subscribed_events(session, {event.workspace_id for event in events})
    for event in events:
        wanted = subscribed.get(event.workspace_id)
        if wanted and any(name in wanted for name in webhook_events(event.type, event.payload)):
            fan_out(db, event)


CONSUMER = Consumer(name=CONSUMER_NAME, handle=handle, types=LOG_TYPES, handle_batch=handle_batch)
