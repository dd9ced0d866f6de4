"""Broadcasts: one message to many contacts, its per-recipient snapshot, the workspace's broadcast
settings and the contacts who asked to receive no more broadcasts."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.clock import utcnow
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin, UTCDateTime


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=24)


class BroadcastStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureReason(enum.StrEnum):
    SEGMENT_DELETED = "segment_deleted"
    EMPTY_AUDIENCE = "empty_audience"
    CHANNEL_DISCONNECTED = "channel_disconnected"
    OVER_MESSAGING_LIMIT = "over_messaging_limit"


class Audience(enum.StrEnum):
    SEGMENT = "segment"
    ALL = "all"
    RESEND = "resend"  # the contacts whose message of `resend_of_id` failed


class ChannelMode(enum.StrEnum):
    SPECIFIC = "specific"
    LAST_INTERACTED = "last_interacted"


class OverLimit(enum.StrEnum):
    """What to do when a WhatsApp number's messaging limit cannot take every recipient."""

    REFUSE = "refuse"  # nothing is sent (the dry run says so; sending fails the broadcast)
    PARTIAL = "partial"  # the recipients past the limit are excluded (reason messaging_limit)


class RecipientState(enum.StrEnum):
    """The recipient row's own state; once a message is written its delivery status is the
    message's (`messages.status`), never copied here."""

    WAITING = "waiting"  # in the audience, no message yet
    EXCLUDED = "excluded"  # never sent: `reason` says why
    MESSAGED = "messaged"  # its message row exists (message_id), in the outbox or past it
    SKIPPED = "skipped"  # the broadcast was stopped before its turn


class ExclusionReason(enum.StrEnum):
    EXCLUDED_SEGMENT = "excluded_segment"
    BLOCKED = "blocked"
    OPTED_OUT = "opted_out"
    NO_IDENTITY = "no_identity"
    WINDOW_CLOSED = "window_closed"
    VARIABLE_EMPTY = "variable_empty"
    MESSAGING_LIMIT = "messaging_limit"
    # A WhatsApp template's text parameter, with this contact's values, breaks a rule of Meta's
    # (audience.parameter_refusal): excluded by the snapshot, or skipped when sent if their values
    # changed in between.
    HEADER_TOO_LONG = "header_too_long"
    BODY_PARAMETER_TOO_LONG = "body_parameter_too_long"
    PARAMETER_SPACING = "parameter_spacing"


class Broadcast(IdMixin, TimestampMixin, Base):
    __tablename__ = "broadcasts"
    __table_args__ = (
        Index("ix_broadcasts_workspace_id_id", "workspace_id", "id"),
        Index("ix_broadcasts_status_scheduled_at", "status", "scheduled_at"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[BroadcastStatus] = mapped_column(_enum(BroadcastStatus, "broadcast_status"))
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    failure_detail: Mapped[str | None] = mapped_column(Text)
    audience: Mapped[Audience] = mapped_column(_enum(Audience, "broadcast_audience"))
    # SET NULL when the segment is deleted: an audience of "segment" with no segment left fails the
    # broadcast with segment_deleted when it starts.
    segment_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("segments.id", ondelete="SET NULL"))
    exclude_segment_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("segments.id", ondelete="SET NULL"))
    exclude_segment_chosen: Mapped[bool] = mapped_column(default=False)
    channel_mode: Mapped[ChannelMode] = mapped_column(_enum(ChannelMode, "broadcast_channel_mode"))
    channel_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("channels.id", ondelete="SET NULL"))
    # {"<channel type>" | "default": {"text", "file_ids", "quick_reply", "buttons", "template",
    # "message_tag"}}: what each kind of channel sends (docs/broadcasts.md).
    content: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    over_limit: Mapped[OverLimit] = mapped_column(_enum(OverLimit, "broadcast_over_limit"))
    # A reply on the same channel this long after the send counts as a reply to the broadcast.
    reply_window_hours: Mapped[int] = mapped_column(Integer, default=72)
    # The workflow to run for each contact who replies within the window (workflows come later;
    # until then the reply is recorded as a broadcast.replied event).
    reply_workflow_id: Mapped[int | None] = mapped_column(BigID)
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_by_user_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    copied_from_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("broadcasts.id", ondelete="SET NULL"))
    # A resend of another broadcast's failed recipients: its audience is those contacts.
    resend_of_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("broadcasts.id", ondelete="SET NULL"))


class BroadcastRecipient(IdMixin, Base):
    """One contact of a broadcast's audience, snapshotted when it starts (INSERT ... SELECT)."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "contact_id"),
        Index("ix_broadcast_recipients_broadcast_id_state_channel_id", "broadcast_id", "state", "channel_id", "id"),
        Index("ix_broadcast_recipients_contact_id_replied", "contact_id", "replied_at"),
        Index("ix_broadcast_recipients_message_id", "message_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    broadcast_id: Mapped[int] = mapped_column(BigID, ForeignKey("broadcasts.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("channels.id", ondelete="SET NULL"))
    state: Mapped[RecipientState] = mapped_column(_enum(RecipientState, "broadcast_recipient_state"))
    reason: Mapped[str | None] = mapped_column(String(40))
    # Whether the message must be the template (the channel's reply window is closed for them).
    needs_template: Mapped[bool] = mapped_column(default=False)
    message_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("messages.id", ondelete="SET NULL"))
    messaged_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]
    reply_message_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BroadcastSettings(Base):
    """A workspace's broadcast settings; no row: the defaults."""

    __tablename__ = "broadcast_settings"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    # A customer's message that is exactly one of these (case- and accent-insensitive) opts them out.
    unsubscribe_keywords: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BroadcastOptOut(IdMixin, Base):
    """A contact who asked to receive no more broadcasts (an unsubscribe keyword, or by hand)."""

    __tablename__ = "broadcast_opt_outs"
    __table_args__ = (UniqueConstraint("contact_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    keyword: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
