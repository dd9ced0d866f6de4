"""Conversations, messages, read markers, mentions, closing-note categories, snippets and files."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.channels.protocol import DeliveryStatus, MessageType
from tertulia.kit.clock import utcnow
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin, UTCDateTime


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=16)


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Direction(enum.StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"
    COMMENT = "comment"
    SYSTEM = "system"


class SenderKind(enum.StrEnum):
    """Who wrote a message. Automated kinds (bot, workflow, broadcast, system) do not count as
    activity for auto-close; a contact's message and a person's (user, or an API token acting for
    one) do (HUMAN_SENDERS). A module that sends on its own writes with an Actor of kind "bot",
    "workflow" or "broadcast" and gets the matching kind here."""

    CONTACT = "contact"
    USER = "user"
    BOT = "bot"
    WORKFLOW = "workflow"
    BROADCAST = "broadcast"
    API = "api"
    SYSTEM = "system"


# Outgoing messages by these reset the auto-close timer (Conversation.last_agent_message_at).
HUMAN_SENDERS = frozenset({SenderKind.USER, SenderKind.API})


class ClosingSource(enum.StrEnum):
    """Who closed a conversation (Conversation.closing_source, and the closed event's payload)."""

    USER = "user"
    API = "api"
    WORKFLOW = "workflow"
    BOT = "bot"
    SYSTEM = "system"
    AUTO_CLOSE = "auto-close"


class OpeningSource(enum.StrEnum):
    """Who opened (or reopened) a conversation (Conversation.opening_source): the sources of the
    "conversation opened" workflow trigger. A customer's message that opened it is "contact", or
    "broadcast_reply" when it was a reply to a broadcast within its reply window."""

    CONTACT = "contact"
    BROADCAST_REPLY = "broadcast_reply"
    USER = "user"
    API = "api"
    WORKFLOW = "workflow"
    SYSTEM = "system"

    @classmethod
    def of_actor(cls, kind: str) -> "OpeningSource":
        """The source for an actor's kind (`Actor.kind`, or the kind in an event's actor label)."""
        return {
            "channel": cls.CONTACT,
            "contact": cls.CONTACT,
            "user": cls.USER,
            "api": cls.API,
            "workflow": cls.WORKFLOW,
        }.get(kind, cls.SYSTEM)


class Conversation(IdMixin, TimestampMixin, Base):
    """At most one OPEN conversation per contact (partial unique index, checked by the service too)."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "uq_conversations_open_contact",
            "contact_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_conversations_ws_status_last", "workspace_id", "status", "last_message_at", "id"),
        Index("ix_conversations_ws_assignee", "workspace_id", "assignee_id", "status"),
        Index("ix_conversations_ws_team", "workspace_id", "team_id", "status"),
        Index("ix_conversations_contact_id", "contact_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    # The channel of the latest customer or outgoing message: where a reply goes by default.
    channel_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("channels.id", ondelete="SET NULL"))
    status: Mapped[ConversationStatus] = mapped_column(_enum(ConversationStatus, "conversation_status"))
    assignee_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    team_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("teams.id", ondelete="SET NULL"))
    bot_paused: Mapped[bool] = mapped_column(default=False)
    closing_category_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("closing_categories.id", ondelete="SET NULL")
    )
    closing_summary: Mapped[str | None] = mapped_column(Text)
    closing_source: Mapped[ClosingSource | None] = mapped_column(_enum(ClosingSource, "closing_source"))
    # Set whenever it is opened or reopened; NULL for conversations opened before it was recorded
    # whose opening event the log no longer had, and for the closed ones a broadcast writes into.
    opening_source: Mapped[OpeningSource | None] = mapped_column(_enum(OpeningSource, "opening_source"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_incoming_at: Mapped[datetime | None]
    # The latest outgoing message written by a person (HUMAN_SENDERS): with last_incoming_at and
    # opened_at, what auto-close measures inactivity from.
    last_agent_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_message_preview: Mapped[str | None] = mapped_column(String(200))


class Message(IdMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Inbound dedupe: a provider retrying a webhook hands us the same id again.
        UniqueConstraint("channel_id", "provider_message_id"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        Index("ix_messages_contact_id_id", "contact_id", "id"),
        Index("ix_messages_workspace_id_status", "workspace_id", "status"),
        # Settings > Channels counts a channel's messages in and out today: a range per direction.
        Index("ix_messages_channel_id_direction_created_at", "channel_id", "direction", "created_at"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(BigID, ForeignKey("conversations.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("channels.id", ondelete="SET NULL"))
    direction: Mapped[Direction] = mapped_column(_enum(Direction, "message_direction"))
    sender_kind: Mapped[SenderKind] = mapped_column(_enum(SenderKind, "message_sender_kind"))
    sender_user_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    type: Mapped[MessageType] = mapped_column(_enum(MessageType, "message_type"))
    text: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    # Only outgoing messages have a delivery status; it moves forward only (STATUS_PREDECESSORS).
    status: Mapped[DeliveryStatus | None] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationRead(Base):
    """How far one user has read one conversation; unread = incoming messages after the marker."""

    __tablename__ = "conversation_reads"

    conversation_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    last_read_message_id: Mapped[int] = mapped_column(BigID, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Mention(IdMixin, Base):
    """A teammate @mentioned in an internal comment: the notification row."""

    __tablename__ = "mentions"
    __table_args__ = (Index("ix_mentions_user_id_id", "user_id", "id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(BigID, ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(BigID, ForeignKey("messages.id", ondelete="CASCADE"))
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ClosingCategory(IdMixin, TimestampMixin, Base):
    __tablename__ = "closing_categories"
    __table_args__ = (UniqueConstraint("workspace_id", "name_key"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(default=0)


class StoredFile(IdMixin, Base):
    """An upload; the bytes live in kit.storage under `storage_key`."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_workspace_id_id", "workspace_id", "id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    storage_key: Mapped[str] = mapped_column(String(300), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigID)
    content_type: Mapped[str] = mapped_column(String(120))
    uploaded_by_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    # Set for files sent in a conversation: only people who may see it may download the file.
    conversation_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("conversations.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Snippet(IdMixin, TimestampMixin, Base):
    """A saved reply, inserted by typing `/shortcut` in the composer."""

    __tablename__ = "snippets"
    __table_args__ = (UniqueConstraint("workspace_id", "shortcut"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    shortcut: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    file_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("files.id", ondelete="SET NULL"))


class InboundCallback(IdMixin, Base):
    """A provider callback that passed verification, kept until its queued task has written what it
    carries (then deleted). Only verified requests are stored; the row is what makes the 200 we
    answered safe: a lost task is found again by the periodic sweep. On SQLite the rows wait in a
    file of their own (conversations/ingress/callbacks.py, `CallbackSpool`)."""

    __tablename__ = "inbound_callbacks"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    query: Mapped[dict[str, Any]] = mapped_column(JSONType)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Until when a task has claimed it (None: waiting); claimed again by anyone once this has passed.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OutboundPace(Base):
    """The recent sends under one pace (a channel, or one recipient on a channel): the outbox's
    sliding-window log, in the database so every worker process paces against the same one."""

    __tablename__ = "outbound_pace"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # When the sends the window still counts went out (seconds since the epoch), oldest first.
    sent_at: Mapped[list[float]] = mapped_column(JSONType)
    # After this the log counts nothing any more and the row may be pruned.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # A channel's pace only: the turns most recently given (seconds since the epoch, the latest
    # `messages` of them, some maybe still to come): a send's claim time when it went at once, else
    # the slot it was queued for. The next slot is found from these alone.
    scheduled: Mapped[list[float] | None] = mapped_column(JSONType, nullable=True)


class SmsConsent(IdMixin, Base):
    """Whether a number may be texted from an SMS channel: our own record, kept from the customer's
    keywords (STOP, BAJA, ... opt out; START, ALTA, ... opt back in) on every provider, with the
    message that said so as its evidence (conversations/sms_consent.py). No row: never opted out."""

    __tablename__ = "sms_consent"
    __table_args__ = (UniqueConstraint("channel_id", "recipient"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(64))  # the customer's id on the channel (E.164)
    opted_out: Mapped[bool]
    keyword: Mapped[str] = mapped_column(String(32))  # as the customer wrote it, or the provider's code
    evidence_message_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("messages.id", ondelete="SET NULL"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsPart(IdMixin, Base):
    """One part of a long SMS that arrives in parts (Vonage's SMS API: concat-ref, concat-total,
    concat-part), kept until every part is in and the parts become one message
    (conversations/sms_parts.py); kept afterwards too, so a part delivered again is known."""

    __tablename__ = "sms_parts"
    __table_args__ = (UniqueConstraint("channel_id", "sender", "ref", "part"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(64))
    part: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    provider_message_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text, default="")
    assembled: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Mailbox(Base):
    """Where the fetcher of an email channel stands in its mailbox (conversations/ingress/mailbox.py):
    IMAP's UIDVALIDITY and the highest UID already spooled (mail is read by UID, and a new
    UIDVALIDITY means the server renumbered the folder: it is read again from the start, the
    Message-IDs keeping it from being stored twice), or for POP3 the UIDLs already spooled. Advanced
    only after the mail is in the callback spool, so a restart never skips mail."""

    __tablename__ = "email_mailboxes"

    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    folder: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    pop_uidls: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The last look at the server, the last new mail found, the next look due, and the last failure.
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    error: Mapped[str | None] = mapped_column(Text)


class AwayMessage(Base):
    """Settings > Away message: what a customer who writes while the workspace (or the conversation's
    team) is closed is told, at most once per conversation per closed period (conversations/away.py)."""

    __tablename__ = "away_messages"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    text: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AwayMessageSend(IdMixin, Base):
    """One away message sent: unique per conversation and closed period (the instant the hours open
    again, or "never"), so a second message in the same closed period sends nothing."""

    __tablename__ = "away_message_sends"
    __table_args__ = (UniqueConstraint("conversation_id", "period"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[int] = mapped_column(BigID, ForeignKey("conversations.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
