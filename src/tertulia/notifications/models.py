import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, BigID, IdMixin


class NotificationKind(enum.StrEnum):
    ASSIGNED = "assigned"  # a conversation was assigned to me
    MENTIONED = "mentioned"  # a teammate @mentioned me in a note
    NEW_MESSAGE = "new_message"  # a customer wrote in a conversation assigned to me
    UNASSIGNED_IN_TEAM = "unassigned_in_team"  # a conversation waits in one of my teams, with no one on it
    BROADCAST_FINISHED = "broadcast_finished"  # a broadcast I created finished sending
    BROADCAST_FAILED = "broadcast_failed"  # a broadcast I created failed


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


class NotificationPreference(IdMixin, Base):
    """One person's choice for one kind; a kind without a row takes DEFAULTS (service.py)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "kind"),)

    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    in_app: Mapped[bool] = mapped_column()
    browser: Mapped[bool] = mapped_column()
    email: Mapped[bool] = mapped_column()
