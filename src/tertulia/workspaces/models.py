from sqlalchemy import String, text, true
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, IdMixin, TimestampMixin


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
    # A person with no active tab for this long is shown away (users/presence.py); 1 to 60.
    away_after_minutes: Mapped[int] = mapped_column(default=10, server_default=text("10"))
