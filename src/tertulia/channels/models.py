"""A configured channel: one WhatsApp number, one Telegram bot, one web-chat widget, ..."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.crypto import EncryptedJSON
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin, UTCDateTime


class Channel(IdMixin, TimestampMixin, Base):
    """`key` is the public, unguessable handle used in webhook and widget URLs (never the numeric id).

    `config` is shown to managers; `secrets` (API tokens, app secrets, the widget's identity secret)
    never leaves the server: it is encrypted at rest (kit/crypto.py) and pages and the API show only
    which names are set.
    """

    __tablename__ = "channels"
    __table_args__ = (Index("ix_channels_workspace_id_type", "workspace_id", "type"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    secrets: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("channels.secrets"), default=dict)
    # Health (channels/health.py): when the provider was last heard from, the last message it
    # accepted, and the last thing that went wrong (a refused send, a failed connect).
    last_callback_at: Mapped[datetime | None]
    last_sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # Whether the last error came from a status callback (a failure the provider reported after it had
    # accepted the send): only a callback, not another accepted send, shows the channel works again.
    last_error_from_status: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The run of provider failures (unreachable, 5xx) going on since the last sign of life: when it
    # began and how many so far. Only a run long and dense enough puts the channel in error.
    first_provider_failure_at: Mapped[datetime | None]
    provider_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    # What the provider says about the number (WhatsApp's phone_number_quality_update webhook): its
    # latest quality event (FLAGGED, UNFLAGGED, UPGRADE, ...) and messaging limit tier (TIER_2K, ...).
    quality_event: Mapped[str | None] = mapped_column(String(40))
    messaging_limit: Mapped[str | None] = mapped_column(String(40))
    quality_changed_at: Mapped[datetime | None]
    # The provider's message templates (MessageTemplate): when they were last read in full, and why
    # the last attempt failed (None once one succeeds).
    templates_synced_at: Mapped[datetime | None]
    templates_sync_error: Mapped[str | None] = mapped_column(Text)


class MessageTemplate(IdMixin, TimestampMixin, Base):
    """One of the provider's pre-approved message templates (WhatsApp: one per name and language of
    the channel's business account), as the last sync or webhook left it. `components` is the
    provider's own list (HEADER, BODY, FOOTER, BUTTONS with their text and examples);
    `parameter_format` is POSITIONAL ({{1}}, {{2}}) or NAMED ({{first_name}})."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("channel_id", "name", "language"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"))
    provider_template_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(15))
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    # Why the provider rejected, paused or disabled it (its reason code and explanation).
    reason: Mapped[str | None] = mapped_column(Text)
    parameter_format: Mapped[str] = mapped_column(String(16))
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    quality: Mapped[str | None] = mapped_column(String(16))
    # Set by a template_category_update webhook: the category it had before.
    previous_category: Mapped[str | None] = mapped_column(String(32))
    status_changed_at: Mapped[datetime | None]


class EmailWatcher(IdMixin, Base):
    """A process that runs the email channels' watchers (`tertulia worker`, `tertulia serve` with its
    embedded queue, `tertulia channel watch-email`), while it runs: its heartbeat says it is alive,
    and the live ones split the mailboxes between them (channels/email_watch.py)."""

    __tablename__ = "email_watchers"

    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # worker, serve or watch-email
    kind: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class EmailWatch(Base):
    """Who reads an email channel's mailbox and how it went: the watcher process holding it (none
    when no process does, and the minute sweep reads it), since when, whether it waits in IMAP IDLE
    or reads every poll_seconds; the last look at the server, the last new mail found there, and the
    last thing that went wrong (kept after later looks succeed)."""

    __tablename__ = "email_watches"

    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    watcher_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("email_watchers.id", ondelete="SET NULL"), index=True
    )
    watched_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # idle or poll; None until the watcher has asked the server
    mode: Mapped[str | None] = mapped_column(String(8))
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mail_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
