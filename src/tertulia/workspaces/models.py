from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, text, true
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.clock import utcnow
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin, UTCDateTime


class Workspace(IdMixin, TimestampMixin, Base):
    __tablename__ = "workspaces"
    name: Mapped[str] = mapped_column(String(120))
    # fold(name): names are unique regardless of case and accents.
    name_key: Mapped[str] = mapped_column(String(120), unique=True)
    default_country: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    default_language: Mapped[str] = mapped_column(String(8), default="en")
    # Agents (who lack view_all_conversations) also see conversations assigned to nobody, so they can
    # pick up new chats; off, an agent sees only what is assigned to them or their teams.
    agents_see_unassigned: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Auto-close: open conversations with no word from the contact or a person of the team for this
    # many minutes are closed (conversations/autoclose.py); None is off.
    auto_close_minutes: Mapped[int | None] = mapped_column(Integer)
    # A person with no active tab for this long is shown away (users/presence.py); 1 to 60.
    away_after_minutes: Mapped[int] = mapped_column(default=10, server_default=text("10"))


class BusinessHoursVersion(IdMixin, Base):
    """The business hours of a workspace (team_id None) or of one team, from `valid_from` on. Saving
    adds a version and never rewrites one, so reports read the hours in force when something
    happened (workspaces/service.py hours_at). A team's version with no schedule follows the
    workspace's hours again."""

    __tablename__ = "business_hours_versions"
    __table_args__ = (Index("ix_business_hours_versions_ws_team_from", "workspace_id", "team_id", "valid_from"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("teams.id", ondelete="CASCADE"))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # BusinessHours.to_dict(); None: a team that follows the workspace's hours.
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
