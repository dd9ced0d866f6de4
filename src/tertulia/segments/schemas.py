from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tertulia.contacts.schemas import ContactOut
from tertulia.kit.types import ID, described


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentCreate(Strict):
    name: Annotated[str, described(120)]
    filter: dict[str, Any] | None = Field(
        default=None, description="The filter JSON (docs/segments.md). Omitted: copy `copy_of`'s, or match everyone."
    )
    copy_of: ID | None = Field(default=None, description="Save as new: start from this segment's filter.")


class SegmentUpdate(Strict):
    name: Annotated[str, described(120)] | None = None
    filter: dict[str, Any] | None = None


class SegmentOut(BaseModel):
    id: int
    name: str
    filter: dict[str, Any]
    count: int | None = Field(description="Contacts in the segment; null when its filter no longer checks.")
    count_computed_at: datetime | None = Field(description="When `count` was computed; never over a minute ago.")
    filter_error: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class SegmentRef(BaseModel):
    id: int
    name: str


class PreviewBody(Strict):
    filter: dict[str, Any] | None = None
    limit: int = Field(default=20, ge=1, le=200)


class PreviewOut(BaseModel):
    count: int
    contacts: list[ContactOut]
