import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin


class Role(enum.StrEnum):
    OWNER = "owner"
    MANAGER = "manager"
    AGENT = "agent"


class ActivityStatus(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    BUSY = "busy"
    OFFLINE = "offline"


class TokenScope(enum.StrEnum):
    """What an API token may reach (docs/api.md, "Token scopes"). `admin` is everything a token may
    do; `read_only` is reading every resource; the others are reading and writing one group."""

    READ_ONLY = "read_only"
    CONTACTS = "contacts"
    MESSAGES = "messages"
    BROADCASTS = "broadcasts"
    ADMIN = "admin"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK, so adding a value is a small migration on both databases.
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=16)


class User(IdMixin, TimestampMixin, Base):
    """A person. One user may belong to several workspaces through memberships."""

    __tablename__ = "users"
    # Stored lower-cased (see users.service.normalize_email), so a plain unique index suffices.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(String(1000))
    # What others see now (users/presence.py keeps it): the person's choice, made away after a
    # while without activity and offline when no tab of theirs is open.
    activity_status: Mapped[ActivityStatus] = mapped_column(
        _enum(ActivityStatus, "activity_status"), default=ActivityStatus.OFFLINE
    )
    # What the person picked on their profile: "online" lets presence move them between online,
    # away and offline; "away" and "busy" stay until they pick again (offline still when no tab).
    status_choice: Mapped[ActivityStatus] = mapped_column(
        _enum(ActivityStatus, "status_choice"), default=ActivityStatus.ONLINE, server_default="online"
    )
    # Inbox alerts for a new message in a conversation assigned to this person (static/js/inbox.js).
    notify_desktop: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_sound: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Put under the person's replies on email channels (plain text, after the standard "-- " line).
    email_signature: Mapped[str | None] = mapped_column(Text)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email


class Membership(IdMixin, TimestampMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    active: Mapped[bool] = mapped_column(default=True)


class Team(IdMixin, TimestampMixin, Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("workspace_id", "name_key"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    name_key: Mapped[str] = mapped_column(String(120))


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(BigID, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Invitation(IdMixin, TimestampMixin, Base):
    __tablename__ = "invitations"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class PasswordReset(IdMixin, TimestampMixin, Base):
    __tablename__ = "password_resets"

    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class WebSession(TimestampMixin, Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class ApiToken(IdMixin, TimestampMixin, Base):
    """A workspace API token. Shown once; stored as HMAC-SHA256 under the installation secret."""

    __tablename__ = "api_tokens"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # TokenScope values; tokens made before scopes existed are "admin", what they could always do.
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=lambda: [TokenScope.ADMIN.value])
    expires_at: Mapped[datetime | None]  # refused from this moment on; None: until revoked


class LoginThrottle(Base):
    """Failed sign-ins per key (email and client address), shared by every process through the DB."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class StatusPeriod(IdMixin, Base):
    """One stretch of time a person spent in one activity status; the open one has no `ended_at`.
    Time online over a range (reports) is the overlap of these rows with it."""

    __tablename__ = "user_status_periods"
    __table_args__ = (Index("ix_user_status_periods_user_id_started_at", "user_id", "started_at"),)

    user_id: Mapped[int] = mapped_column(BigID, ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[ActivityStatus] = mapped_column(_enum(ActivityStatus, "period_status"))
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
