from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tertulia.contacts.models import FieldType
from tertulia.kit.types import ID, Position


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactWrite(Strict):
    """Create and PATCH body. On PATCH only the keys sent change; null clears a value."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    language: str | None = None
    country: str | None = None
    avatar_url: str | None = None
    assignee_id: ID | None = None
    custom_fields: dict[str, Any] | None = None
    tags: list[str] | None = Field(default=None, description="On create only: tags to add.")


class ContactOut(BaseModel):
    id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    phone_raw: str | None
    language: str | None
    country: str | None
    avatar_url: str | None
    assignee_id: int | None
    created_at: datetime
    updated_at: datetime
    last_incoming_at: datetime | None
    last_outgoing_at: datetime | None
    custom_fields: dict[str, Any]
    tags: list[str]
    blocked: bool = Field(description="Blocked: messages are not put into the inbox; see POST .../block.")
    blocked_at: datetime | None
    blocked_messages: int = Field(description="Messages refused since the contact was first blocked.")
    last_blocked_at: datetime | None


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None


class TagsBody(Strict):
    tags: list[str] = Field(min_length=1, max_length=100)


class TagOut(BaseModel):
    id: int
    name: str
    created_at: datetime


class CustomFieldCreate(Strict):
    key: str
    label: str
    type: FieldType
    options: list[str] | None = None


class CustomFieldUpdate(Strict):
    label: str | None = None
    options: list[str] | None = None
    position: Position | None = None


class CustomFieldOut(BaseModel):
    id: int
    key: str
    label: str
    type: FieldType
    options: list[str] | None
    position: int


class ActivityOut(BaseModel):
    id: int
    action: str
    field: str | None
    old_value: Any
    new_value: Any
    actor_kind: str
    actor_user_id: int | None
    created_at: datetime


class MergeBody(Strict):
    other: str = Field(description="Identifier of the contact merged into this one and then removed.")
    take_from_other: list[str] = Field(
        default_factory=list,
        description="Fields (standard names or custom field keys) whose value comes from the other contact.",
    )


class IdentityOut(BaseModel):
    id: int
    channel: str
    external_id: str
    display_name: str | None


class MergeSuggestionOut(BaseModel):
    id: int
    reason: str = Field(description="What the two contacts share: phone, email or name.")
    status: str = Field(description="open, or dismissed (never suggested again).")
    created_at: datetime
    contact: ContactOut = Field(description="The other contact of the pair.")
    survivor_id: int = Field(description="The contact that remains if the suggestion is accepted (the older one).")
