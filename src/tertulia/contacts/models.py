import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, Integer, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.clock import utcnow
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin, UTCDateTime


class FieldType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"
    CHECKBOX = "checkbox"
    EMAIL = "email"
    URL = "url"
    PHONE = "phone"


class Contact(IdMixin, TimestampMixin, Base):
    """One customer, across every channel they use.

    `*_folded` columns hold the lower-cased, accent-stripped value (kit.text.fold), so
    case- and accent-insensitive search and filters are plain indexed comparisons on both databases.
    """

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email"),
        UniqueConstraint("workspace_id", "phone"),
        Index("ix_contacts_workspace_id_id", "workspace_id", "id"),
        Index("ix_contacts_workspace_id_assignee_id", "workspace_id", "assignee_id"),
        Index("ix_contacts_workspace_id_first_name_folded", "workspace_id", "first_name_folded"),
        Index("ix_contacts_workspace_id_last_name_folded", "workspace_id", "last_name_folded"),
        Index("ix_contacts_workspace_id_blocked", "workspace_id", "blocked"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    first_name_folded: Mapped[str | None] = mapped_column(String(200))
    last_name_folded: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(20))
    phone_raw: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(2))
    country: Mapped[str | None] = mapped_column(String(2))
    avatar_url: Mapped[str | None] = mapped_column(String(2000))
    assignee_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    last_incoming_at: Mapped[datetime | None]
    last_outgoing_at: Mapped[datetime | None]
    custom: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # fold() of every text value in `custom`, so segment text filters on custom fields are case- and
    # accent-insensitive with the same plain comparison on both databases. Kept by
    # service.apply_cleaned and do_merge_contacts; never written anywhere else.
    custom_folded: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, server_default=text("'{}'"))
    # How many tags the contact has, so "has any tag" is an index lookup. Kept by database triggers
    # on contact_tags (migration 0070_tag_count); the only application writer is the CSV import on
    # PostgreSQL, which writes it for the contacts it creates and tells the trigger so (0600).
    tag_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Blocked: the contact's messages are not put into the inbox, only counted here and recorded in
    # the event log (message.blocked); its web-chat visitors' tokens stop working (identities'
    # token_generation). A filterable attribute, so broadcasts and workflows can leave them out.
    blocked: Mapped[bool] = mapped_column(default=False, server_default=false())
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    blocked_messages: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class CustomField(IdMixin, TimestampMixin, Base):
    __tablename__ = "custom_fields"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(120))
    type: Mapped[FieldType] = mapped_column(
        Enum(FieldType, name="field_type", native_enum=False, values_callable=lambda e: [m.value for m in e], length=16)
    )
    options: Mapped[list[str] | None] = mapped_column(JSONType)
    position: Mapped[int] = mapped_column(default=0)


class Tag(IdMixin, Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("workspace_id", "name_key"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # fold(name): "VIP" and "vip" are one tag.
    name_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContactTag(Base):
    __tablename__ = "contact_tags"

    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(BigID, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ContactIdentity(IdMixin, TimestampMixin, Base):
    """How a contact is known on one channel (a WhatsApp number, a Telegram user id, a web-chat visitor)."""

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("workspace_id", "channel", "external_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    # Web chat: a visitor's tokens carry the generation they were issued under; raising it (blocking
    # the contact, ending its sessions) makes every earlier token unusable at once.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class ContactActivity(IdMixin, Base):
    """Who changed what on a contact, when, with the old and new value."""

    __tablename__ = "contact_activities"
    __table_args__ = (Index("ix_contact_activities_contact_id_id", "contact_id", "id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    actor_user_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    field: Mapped[str | None] = mapped_column(String(100))
    old_value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    new_value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MergeSuggestion(IdMixin, Base):
    """Two contacts that may be one person (a new channel identity whose phone, email or name matches
    another contact, when linking it was not certain). One row per pair, lower id first, so a pair is
    suggested at most once; a dismissed row stays so that the pair is never suggested again.
    Accepting merges the pair, and the merged contact's deletion removes the row."""

    __tablename__ = "contact_merge_suggestions"
    __table_args__ = (
        UniqueConstraint("workspace_id", "contact_id", "other_contact_id"),
        CheckConstraint("contact_id < other_contact_id", name="pair_ordered"),
        Index("ix_contact_merge_suggestions_other_contact_id", "other_contact_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    other_contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    # What the two share: "phone", "email" or "name".
    reason: Mapped[str] = mapped_column(String(16))
    # "open" (shown on both contacts) or "dismissed" (kept so the pair is not suggested again).
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by_user_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))
