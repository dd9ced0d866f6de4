import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, BigID, IdMixin


class NotificationKind(enum.StrEnum):
    ASSIGNED = "assigned"  # a conversation was assigned to me
    MENTIONED = "mentioned"  # a teammate @mentioned me in a note
    NEW_MESSAGE = "new_message"  # a customer wrote in a conversation assigned to me
    UNASSIGNED_IN_TEAM = "unassigned_in_team"  # a conversation waits in one of my teams, with no one on it
    BROADCAST_FINISHED = "broadcast_finished"  # a broadcast I created finished sending
    BROADCAST_FAILED = "broadcast_failed"  # a broadcast I created failed
    WAITING = "waiting"  # a customer in a conversation assigned to me has waited long for a reply
    CHANNEL_ERROR = "channel_error"  # a channel stopped working (owners and managers)
    CHANNEL_RECOVERED = "channel_recovered"  # a channel that had stopped works again


@dataclass(frozen=True)
class Choice:
    in_app: bool
    browser: bool
    email: bool


DEFAULTS: dict[str, Choice] = {
    NotificationKind.ASSIGNED: Choice(True, True, False),
    NotificationKind.MENTIONED: Choice(True, True, True),
    NotificationKind.NEW_MESSAGE: Choice(True, True, False),
    NotificationKind.UNASSIGNED_IN_TEAM: Choice(True, False, False),
    NotificationKind.BROADCAST_FINISHED: Choice(True, False, False),
    NotificationKind.BROADCAST_FAILED: Choice(True, True, True),
    NotificationKind.WAITING: Choice(True, True, False),
    NotificationKind.CHANNEL_ERROR: Choice(True, True, True),
    NotificationKind.CHANNEL_RECOVERED: Choice(True, False, False),
}


class Notification(IdMixin, Base):
    """One thing one person should know, linking to its place. `dedupe_key` (the event and kind)
    makes a re-fed event write nothing new."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        Index("ix_notifications_user_id_workspace_id_id", "user_id", "workspace_id", "id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[int | None] = mapped_column(BigID)
    conversation_id: Mapped[int | None] = mapped_column(BigID)
    # What the text is made of (names, an excerpt), so it is shown in the reader's language.
    params: Mapped[dict[str, Any]] = mapped_column()
    link: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column()
    # False: the person wants this kind by email only; it is never in the bell or the list.
    in_app: Mapped[bool] = mapped_column(default=True, server_default=true())
    # None: no email wanted; "pending" until sent ("sent") or read first ("skipped") (emails.py).
    email_state: Mapped[str | None] = mapped_column(String(16))


class NotificationPreference(IdMixin, Base):
    """One person's choice for one kind; a kind without a row takes DEFAULTS (service.py)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "kind"),)

    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    in_app: Mapped[bool] = mapped_column()
    browser: Mapped[bool] = mapped_column()
    email: Mapped[bool] = mapped_column()


class EmailMode(enum.StrEnum):
    IMMEDIATE = "immediate"  # each notification by itself, as soon as the person is away or offline
    DIGEST = "digest"  # what piled up, at most once every DIGEST_EVERY


class NotificationEmailSettings(IdMixin, Base):
    """How one person gets their notification emails; no row: immediate."""

    __tablename__ = "notification_email_settings"

    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    digest_sent_at: Mapped[datetime | None] = mapped_column()
