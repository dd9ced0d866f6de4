"""JSON shapes of the users API."""

from datetime import datetime

from pydantic import BaseModel

from tertulia.users.models import ActivityStatus, Role


class MemberOut(BaseModel):
    id: int
    email: str
    first_name: str
    last_name: str
    role: Role
    active: bool
    activity_status: ActivityStatus
    language: str | None
    timezone: str | None
    avatar_url: str | None
    created_at: datetime


class MemberList(BaseModel):
    items: list[MemberOut]


class TeamOut(BaseModel):
    id: int
    name: str
    member_ids: list[int]


class TeamList(BaseModel):
    items: list[TeamOut]
