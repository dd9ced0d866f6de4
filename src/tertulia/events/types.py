"""The event catalogue: every durable event's name and the shape of its payload.

Names are `<entity>.<past tense>`. A payload is JSON and describes the fact as it was when it
happened; consumers that need the entity's current state read it themselves. Segment membership is
not an event (it is computed, not recorded). docs/events.md lists who emits each one.
"""

import enum
from typing import Any, NotRequired, TypedDict


class EventType(enum.StrEnum):
    CONTACT_CREATED = "contact.created"
    CONTACT_UPDATED = "contact.updated"
    CONTACT_TAGGED = "contact.tagged"
    CONTACT_UNTAGGED = "contact.untagged"
    CONTACT_MERGED = "contact.merged"
    CONTACT_DELETED = "contact.deleted"
    CONTACT_IDENTITY_LINKED = "contact.identity_linked"
    CONTACT_MERGE_SUGGESTED = "contact.merge_suggested"
    CONVERSATION_OPENED = "conversation.opened"
    CONVERSATION_ASSIGNED = "conversation.assigned"
    CONVERSATION_UNASSIGNED = "conversation.unassigned"
    CONVERSATION_CLOSED = "conversation.closed"
    CONVERSATION_REOPENED = "conversation.reopened"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_SENT = "message.sent"
    MESSAGE_STATUS_CHANGED = "message.status_changed"
    MESSAGE_BLOCKED = "message.blocked"
    COMMENT_ADDED = "comment.added"
    BROADCAST_STARTED = "broadcast.started"
    BROADCAST_COMPLETED = "broadcast.completed"
    BROADCAST_FAILED = "broadcast.failed"
    BROADCAST_REPLIED = "broadcast.replied"
    WORKFLOW_RUN_FAILED = "workflow.run_failed"
    CHANNEL_ERRORED = "channel.errored"
    CHANNEL_RECOVERED = "channel.recovered"
    USER_STATUS_CHANGED = "user.status_changed"
    TEAM_MEMBERS_CHANGED = "team.members_changed"


class ContactCreated(TypedDict):
    contact_id: int
    # "channel:webchat" for a new sender written by the inbox; None when made by hand, the API or a split.
    source: str | None


class FieldChange(TypedDict):
    field: str  # a column name, or "custom_fields.<key>"
    old: Any
    new: Any


class ContactUpdated(TypedDict):
    contact_id: int
    changes: list[FieldChange]


class ContactTagged(TypedDict):
    """contact.tagged and contact.untagged: one event per tag."""

    contact_id: int
    tag: str


class ContactDeleted(TypedDict):
    contact_id: int  # no longer exists
    contact: dict[str, Any]  # the API's shape of the contact just before it was deleted


class ContactMerged(TypedDict):
    contact_id: int  # the survivor
    merged_contact_id: int  # deleted; its conversations, identities, tags and history moved over
    merged_name: str


class ContactIdentityLinked(TypedDict):
    """A new channel identity was joined to an existing contact because the channel vouches for a
    phone or email only that contact has (contacts/identities.py)."""

    contact_id: int
    channel: str  # the channel type: "whatsapp"
    external_id: str
    matched_on: str  # "phone" or "email"


class ContactMergeSuggested(TypedDict):
    """A new sender's contact may be the same person as another contact; shown on both to accept
    (a merge, contact.merged) or dismiss."""

    suggestion_id: int
    contact_id: int  # the older contact of the pair
    other_contact_id: int  # the newer one
    reason: str  # "phone", "email" or "name"


class ConversationSnapshot(TypedDict):
    """The inbox's conversation shape, built by `conversations.schemas.conversation_dict` (typed as
    this, so the two cannot drift apart): what the API answers, events carry and webhooks send."""

    id: int
    contact_id: int
    channel_id: int | None
    status: str
    assignee_id: int | None
    team_id: int | None
    bot_paused: bool
    closing_category_id: int | None
    closing_summary: str | None
    # Who closed it: "user", "api", "workflow", "bot", "system" or "auto-close" (ClosingSource).
    closing_source: str | None
    # Who opened it, or last reopened it: "contact", "broadcast_reply" (a customer's reply to a
    # broadcast was its first message), "user", "api", "workflow" or "system" (OpeningSource). Null
    # for conversations opened before it was recorded whose opening the event log no longer had.
    opening_source: str | None
    opened_at: str
    closed_at: str | None
    last_message_at: str
    last_incoming_at: str | None
    last_message_preview: str | None


class ConversationChanged(TypedDict):
    """conversation.opened / assigned / unassigned / closed / reopened."""

    conversation: ConversationSnapshot
    # assigned and unassigned only: who had it before.
    previous_assignee_id: NotRequired[int | None]
    previous_team_id: NotRequired[int | None]


class MessageSnapshot(TypedDict):
    """The inbox's message shape (`conversations.service.message_dict`)."""

    id: int
    conversation_id: int
    contact_id: int
    channel_id: int | None
    direction: str
    sender_kind: str
    sender_user_id: int | None
    type: str
    text: str | None
    attachments: list[dict[str, Any]]
    payload: dict[str, Any]
    status: str | None
    status_reason: str | None
    created_at: str


class MessageWritten(TypedDict):
    """message.received, message.sent (written, queued for delivery) and comment.added."""

    message: MessageSnapshot


class MessageStatusChanged(TypedDict):
    message_id: int
    status: str  # sent, delivered, read, failed
    reason: str | None


class MessageBlocked(TypedDict):
    """A blocked contact's message: not put into the inbox, its text and files not kept; this row
    (and the contact's `blocked_messages` count) is what remains of it."""

    contact_id: int
    channel_id: int
    provider_message_id: str | None
    type: str  # text, image, ...


class BroadcastChanged(TypedDict):
    """broadcast.started / completed / failed: the broadcast and its counts at that moment."""

    broadcast_id: int
    name: str
    status: str
    # failed only: segment_deleted, empty_audience, channel_disconnected, over_messaging_limit
    reason: NotRequired[str | None]
    recipients: int
    excluded: int


class BroadcastReplied(TypedDict):
    """A recipient answered on the broadcast's channel within its reply window (once per recipient)."""

    broadcast_id: int
    contact_id: int
    channel_id: int | None
    message_id: int  # the broadcast's message to them
    reply_message_id: int
    workflow_id: int | None  # the workflow the broadcast names for replies, when it names one


class WorkflowRunFailed(TypedDict):
    """A workflow run ended with an error: a step failed with no failure branch, runaway protection
    stopped it, or its definition no longer checks."""

    workflow_id: int
    workflow_name: str
    run_id: int
    contact_id: int
    step_id: str | None  # the step it was at
    error: str


class ChannelHealthChanged(TypedDict):
    """channel.errored: a connected channel's provider refused the channel itself (its credentials,
    its account; or could not be reached) on a send, a mailbox read or a failed disconnect, and
    nothing has worked since (a refusal of one message or recipient is not one); channel.recovered:
    it works again (the provider accepted a message or called back, or a person connected it anew).
    Once per change of state (channels/health.py), never per failed message."""

    channel_id: int
    name: str
    channel_type: str  # "whatsapp", "telegram", ...
    error: str | None  # the error that put it in error (errored), the last one kept (recovered)
    # Whose fault the error was (channels.protocol.Fault: "credentials", "account", "provider") and
    # the provider's code ("whatsapp:190", "20003", "535"); null on a recovery and where unknown.
    # Absent from events written before they were recorded.
    fault: NotRequired[str | None]
    code: NotRequired[str | None]


class UserStatusChanged(TypedDict):
    """The activity status shown for a person changed (users/presence.py: their choice, their tabs
    opening or closing, inactivity); one event in each workspace they are an active member of."""

    user_id: int
    status: str  # "online", "away", "busy", "offline"
    previous_status: str


class TeamMembersChanged(TypedDict):
    """Who is in a team changed (users/teams.py); only when someone joined or left."""

    team_id: int
    added_user_ids: list[int]
    removed_user_ids: list[int]


PAYLOADS: dict[EventType, type] = {
    EventType.CONTACT_CREATED: ContactCreated,
    EventType.CONTACT_UPDATED: ContactUpdated,
    EventType.CONTACT_TAGGED: ContactTagged,
    EventType.CONTACT_UNTAGGED: ContactTagged,
    EventType.CONTACT_MERGED: ContactMerged,
    EventType.CONTACT_IDENTITY_LINKED: ContactIdentityLinked,
    EventType.CONTACT_MERGE_SUGGESTED: ContactMergeSuggested,
    EventType.CONVERSATION_OPENED: ConversationChanged,
    EventType.CONVERSATION_ASSIGNED: ConversationChanged,
    EventType.CONVERSATION_UNASSIGNED: ConversationChanged,
    EventType.CONVERSATION_CLOSED: ConversationChanged,
    EventType.CONVERSATION_REOPENED: ConversationChanged,
    EventType.MESSAGE_RECEIVED: MessageWritten,
    EventType.MESSAGE_SENT: MessageWritten,
    EventType.MESSAGE_STATUS_CHANGED: MessageStatusChanged,
    EventType.MESSAGE_BLOCKED: MessageBlocked,
    EventType.COMMENT_ADDED: MessageWritten,
    EventType.BROADCAST_STARTED: BroadcastChanged,
    EventType.BROADCAST_COMPLETED: BroadcastChanged,
    EventType.BROADCAST_FAILED: BroadcastChanged,
    EventType.BROADCAST_REPLIED: BroadcastReplied,
    EventType.WORKFLOW_RUN_FAILED: WorkflowRunFailed,
    EventType.CHANNEL_ERRORED: ChannelHealthChanged,
    EventType.CHANNEL_RECOVERED: ChannelHealthChanged,
    EventType.USER_STATUS_CHANGED: UserStatusChanged,
    EventType.TEAM_MEMBERS_CHANGED: TeamMembersChanged,
}
