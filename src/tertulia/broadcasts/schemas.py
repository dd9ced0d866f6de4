"""The broadcasts API's shapes."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tertulia.kit.types import ID, described


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


CONTENT_DESCRIPTION = (
    "What each kind of channel sends, keyed by channel type (`whatsapp`, `messenger`, `telegram`, "
    "`twilio`, ...) or `default`: `{text, file_ids, quick_reply, buttons, template, message_tag}`. "
    '`text` takes dynamic variables with fallbacks (`{{contact.first_name | "cliente"}}`); `file_ids` '
    "one uploaded file; `quick_reply`/`buttons` where the channel has them; `template` (WhatsApp) is "
    '`{name, language, components}` whose text parameters are a value (`{"text": ...}`, variables '
    'allowed) or a variable (`{"variable": "contact.first_name", "fallback": "cliente"}`); '
    "`message_tag` (Messenger) one of ACCOUNT_UPDATE, POST_PURCHASE_UPDATE, CONFIRMED_EVENT_UPDATE."
)


class BroadcastFields(Strict):
    labels: Annotated[list[Annotated[str, described(40)]], described(max_items=20)] | None = None
    audience: str | None = Field(
        default=None, description="`segment` (the default: `segment_id`'s members) or `all` (every contact)."
    )
    segment_id: ID | None = Field(default=None, description="The audience's segment.")
    exclude_segment_id: ID | None = Field(
        default=None, description="Members of this segment are left out (counted as excluded_segment)."
    )
    channel_mode: str | None = Field(
        default=None,
        description="`specific` (`channel_id`) or `last_interacted` (each contact's last channel they wrote on).",
    )
    channel_id: ID | None = None
    content: dict[str, Any] | None = Field(default=None, description=CONTENT_DESCRIPTION)
    over_limit: str | None = Field(
        default=None,
        description="Over a WhatsApp number's messaging limit: `refuse` (nothing is sent) or `partial` "
        "(the recipients past the limit are excluded, reason messaging_limit).",
    )
    reply_window_hours: int | None = Field(
        default=None, description="A reply on the same channel this long after the send counts (default 72)."
    )
    reply_workflow_id: ID | None = Field(
        default=None, description="The workflow to run for each contact who replies within the window."
    )


class BroadcastCreate(BroadcastFields):
    name: Annotated[str, described(120)]


class BroadcastUpdate(BroadcastFields):
    """A draft's fields; null clears `labels`, `exclude_segment_id` and `reply_workflow_id`."""

    name: Annotated[str, described(120)] | None = None


class ScheduleBody(Strict):
    scheduled_at: datetime | None = Field(
        default=None,
        description="When to send: without an offset, a wall-clock time in the workspace's time zone "
        "(a time the clocks skip is refused; one they repeat is the first); omitted: now.",
    )


class Counts(BaseModel):
    audience: int = Field(description="Contacts in the audience (recipients + excluded + skipped).")
    recipients: int = Field(description="Contacts who receive (or received) it.")
    excluded: int
    skipped: int = Field(description="Not sent because the broadcast stopped or failed before their turn.")
    by_channel: dict[str, int] = Field(description="Recipients per channel id.")
    templates_by_channel: dict[str, int] = Field(
        description="Recipients per channel id who get the template (their reply window is closed)."
    )
    excluded_by_reason: dict[str, int] = Field(
        description="excluded_segment, blocked, opted_out, no_identity, window_closed, variable_empty, messaging_limit."
    )


class ResultsOut(BaseModel):
    sent: int
    delivered: int
    read: int
    replied: int
    failed: int
    pending: int


class BroadcastOut(BaseModel):
    id: int
    name: str
    labels: list[str]
    status: str = Field(description="draft, scheduled, sending, paused, completed, failed, cancelled.")
    failure_reason: str | None = Field(
        description="failed only: segment_deleted, empty_audience, channel_disconnected, over_messaging_limit."
    )
    failure_detail: str | None
    audience: str
    segment_id: int | None
    exclude_segment_id: int | None
    channel_mode: str
    channel_id: int | None
    content: dict[str, Any]
    over_limit: str
    reply_window_hours: int
    reply_workflow_id: int | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    copied_from_id: int | None
    resend_of_id: int | None
    created_at: datetime
    updated_at: datetime
    recipients: int | None = Field(default=None, description="Once started: contacts messaged or waiting.")
    counts: Counts | None = Field(
        default=None, description="Once started, on a single broadcast's read: the snapshot's counts."
    )
    results: ResultsOut | None = Field(default=None, description="Once started: what happened to the messages.")


class BroadcastPage(BaseModel):
    items: list[BroadcastOut]
    next_cursor: str | None


class LimitOut(BaseModel):
    channel_id: int
    limit: int = Field(description="The number's messaging limit (unique contacts in 24 h).")
    used: int = Field(description="Unique contacts sent a template in the last 24 h.")
    room: int
    over: int


class DryRunOut(BaseModel):
    counts: Counts
    messaging_limits: list[LimitOut]
    refused: bool = Field(description="True when it would not be sent at all; `refusal` says why.")
    refusal: str | None


class PreviewOut(BaseModel):
    contact_id: int
    contact_name: str
    channel_id: int | None
    channel_type: str | None
    type: str | None
    text: str | None
    payload: dict[str, Any]
    attachments: list[dict[str, Any]]
    error: str | None


class RecipientOut(BaseModel):
    id: int
    contact_id: int
    name: str
    channel_id: int | None
    status: str = Field(
        description="waiting, excluded, skipped, or the message's: pending, sent, delivered, read, failed."
    )
    reason: str | None = Field(description="Why it was excluded or skipped, or the provider's failure reason.")
    at: datetime | None
    message_id: int | None
    replied_at: datetime | None


class RecipientPage(BaseModel):
    items: list[RecipientOut]
    next_cursor: str | None


class SettingsBody(Strict):
    unsubscribe_keywords: Annotated[list[Annotated[str, described(64)]], described(max_items=30)]


class SettingsOut(BaseModel):
    unsubscribe_keywords: list[str]


class OptOutBody(Strict):
    contact_id: ID
