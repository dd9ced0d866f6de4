"""The events an endpoint can subscribe to, and which event-log events produce them.

Webhook event names follow the event log's (`<entity>.<past tense>`), close to respond.io's. A few
may be listed for endpoints to choose before anything emits them (`emitted` False); docs/webhooks.md
says which.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tertulia.events.types import EventType
from tertulia.web import i18n


@dataclass(frozen=True)
class WebhookEvent:
    name: str
    label: str  # i18n.lazy
    emitted: bool = True


EVENTS: tuple[WebhookEvent, ...] = (
    WebhookEvent("contact.created", i18n.lazy("Contact created")),
    WebhookEvent("contact.updated", i18n.lazy("Contact updated")),
    WebhookEvent("contact.deleted", i18n.lazy("Contact deleted")),
    WebhookEvent("contact.merged", i18n.lazy("Contacts merged")),
    WebhookEvent("contact.tag_added", i18n.lazy("Contact tag added")),
    WebhookEvent("contact.tag_removed", i18n.lazy("Contact tag removed")),
    WebhookEvent("contact.assignee_changed", i18n.lazy("Contact assignee changed")),
    WebhookEvent("message.received", i18n.lazy("Message received")),
    WebhookEvent("message.sent", i18n.lazy("Message sent")),
    WebhookEvent("message.status_changed", i18n.lazy("Message status changed")),
    WebhookEvent("conversation.opened", i18n.lazy("Conversation opened")),
    WebhookEvent("conversation.closed", i18n.lazy("Conversation closed")),
    WebhookEvent("conversation.assigned", i18n.lazy("Conversation assigned")),
    WebhookEvent("comment.added", i18n.lazy("Comment added")),
    WebhookEvent("broadcast.started", i18n.lazy("Broadcast started")),
    WebhookEvent("broadcast.completed", i18n.lazy("Broadcast completed")),
    WebhookEvent("broadcast.failed", i18n.lazy("Broadcast failed")),
    WebhookEvent("workflow.run_failed", i18n.lazy("Workflow run failed")),
    WebhookEvent("channel.errored", i18n.lazy("Channel in error")),
    WebhookEvent("channel.recovered", i18n.lazy("Channel recovered")),
)
NAMES: tuple[str, ...] = tuple(e.name for e in EVENTS)
TEST_EVENT = "webhook.test"

# Event-log type -> the webhook event it becomes (contact.updated may also be contact.assignee_changed).
FROM_LOG: dict[EventType, str] = {
    EventType.CONTACT_CREATED: "contact.created",
    EventType.CONTACT_UPDATED: "contact.updated",
    EventType.CONTACT_MERGED: "contact.merged",
    EventType.CONTACT_DELETED: "contact.deleted",
    EventType.CONTACT_TAGGED: "contact.tag_added",
    EventType.CONTACT_UNTAGGED: "contact.tag_removed",
    EventType.MESSAGE_RECEIVED: "message.received",
    EventType.MESSAGE_SENT: "message.sent",
    EventType.MESSAGE_STATUS_CHANGED: "message.status_changed",
    EventType.CONVERSATION_OPENED: "conversation.opened",
    EventType.CONVERSATION_REOPENED: "conversation.opened",
    EventType.CONVERSATION_CLOSED: "conversation.closed",
    EventType.CONVERSATION_ASSIGNED: "conversation.assigned",
    EventType.CONVERSATION_UNASSIGNED: "conversation.assigned",
    EventType.COMMENT_ADDED: "comment.added",
    EventType.BROADCAST_STARTED: "broadcast.started",
    EventType.BROADCAST_COMPLETED: "broadcast.completed",
    EventType.BROADCAST_FAILED: "broadcast.failed",
    EventType.WORKFLOW_RUN_FAILED: "workflow.run_failed",
    EventType.CHANNEL_ERRORED: "channel.errored",
    EventType.CHANNEL_RECOVERED: "channel.recovered",
}
LOG_TYPES: frozenset[EventType] = frozenset(FROM_LOG)
ASSIGNEE_FIELD = "assignee_id"


def webhook_events(log_type: str, payload: Mapping[str, Any]) -> list[str]:
    """The webhook events one event-log event becomes, in order."""
    try:
        name = FROM_LOG[EventType(log_type)]
    except (ValueError, KeyError):
        return []
    names = [name]
    if name == "contact.updated" and any(c.get("field") == ASSIGNEE_FIELD for c in payload.get("changes", [])):
        names.append("contact.assignee_changed")
    return names
