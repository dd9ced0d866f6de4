"""Saved segments, and the contact indexes the segment filters rely on."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.contacts.models import Contact, ContactTag
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin


class Segment(IdMixin, TimestampMixin, Base):
    """A named filter. `contact_count` is a cache: see service.COUNT_MAX_AGE for when it is recomputed."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("workspace_id", "name_key"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    # casefold(name): names are unique in a workspace regardless of case.
    name_key: Mapped[str] = mapped_column(String(120))
    filter: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    contact_count: Mapped[int | None]
    count_computed_at: Mapped[datetime | None]
    created_by_user_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("users.id", ondelete="SET NULL"))


# Range scans for the date conditions (default segments "created <7 days", "inactive >30 days") and
# equality/IN for country and language, each led by workspace_id because every query is scoped.
# Declared here, beside the filters that need them; they live on the contacts table.
CONTACT_INDEXES = (
    Index("ix_contacts_workspace_id_created_at", Contact.workspace_id, Contact.created_at),
    Index("ix_contacts_workspace_id_updated_at", Contact.workspace_id, Contact.updated_at),
    Index("ix_contacts_workspace_id_last_incoming_at", Contact.workspace_id, Contact.last_incoming_at),
    Index("ix_contacts_workspace_id_last_outgoing_at", Contact.workspace_id, Contact.last_outgoing_at),
    Index("ix_contacts_workspace_id_country", Contact.workspace_id, Contact.country),
    Index("ix_contacts_workspace_id_language", Contact.workspace_id, Contact.language),
    # "has any tag" / "has no tag" (tag_count is kept by triggers, migration 0070_tag_count).
    Index("ix_contacts_workspace_id_tag_count", Contact.workspace_id, Contact.tag_count),
    # "contacts with tag X" reads contact ids straight from the index, without touching the table.
    Index("ix_contact_tags_tag_id_contact_id", ContactTag.tag_id, ContactTag.contact_id),
)
