from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from tertulia.contacts.models import FieldType
from tertulia.kit.types import ID, Position, described

# What contacts.fields and contacts.service check, for the schema (kit.types.described).
Name = Annotated[str, described(200)]
Email = Annotated[str, described(254, format="email")]
Phone = Annotated[str, described(64)]
Code = Annotated[str, described(pattern=r"^\s*[A-Za-z]{2}\s*$")]
Url = Annotated[str, described(2000, format="uri")]
TagName = Annotated[str, described(100)]
FieldKey = Annotated[str, described(64, pattern=r"^[a-z][a-z0-9_]{0,63}$")]
FieldLabel = Annotated[str, described(120)]
Options = Annotated[list[Annotated[str, described(200)]], described(max_items=1000)]
# A contact in a URL (contacts.service.parse_identifier).
IDENTIFIER_PATTERN = r"^(id:[0-9]{1,19}|email:[^\s]+@[^\s]+|phone:\+?[0-9]{6,15})$"
Identifier = Annotated[
    str,
    Path(
        description="`id:<number>`, `email:<address>` or `phone:<+E.164 number>`",
        json_schema_extra={"pattern": IDENTIFIER_PATTERN, "maxLength": 300},
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactWrite(Strict):
    """Create and PATCH body. On PATCH only the keys sent change; null clears a value."""

    first_name: Name | None = None
    last_name: Name | None = None
    email: Email | None = None
    phone: Phone | None = Field(default=None, description="Any common format; stored as E.164.")
    language: Code | None = Field(default=None, description="ISO 639-1, e.g. `es`.")
    country: Code | None = Field(default=None, description="ISO 3166-1 alpha-2, e.g. `MX`.")
    avatar_url: Url | None = Field(default=None, description="An http(s) URL.")
    assignee_id: ID | None = None
    custom_fields: dict[str, Any] | None = None
    tags: list[TagName] | None = Field(default=None, description="On create only: tags to add.")


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
    tags: list[TagName] = Field(min_length=1, max_length=100)


class TagBody(Strict):
    name: TagName


class TagOut(BaseModel):
    id: int
    name: str
    created_at: datetime


class CustomFieldCreate(Strict):
    key: FieldKey
    label: FieldLabel
    type: FieldType
    options: Options | None = None


class CustomFieldUpdate(Strict):
    label: FieldLabel | None = None
    options: Options | None = None
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
