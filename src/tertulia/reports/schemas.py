"""The API's shapes for reports."""

from datetime import datetime

from pydantic import BaseModel

Cell = str | int | float | None


class TableOut(BaseModel):
    columns: list[str]
    rows: list[list[Cell]]


class ReportOut(BaseModel):
    report: str
    timezone: str
    range: dict[str, str]  # preset, from, to
    previous: dict[str, str]  # from, to
    grain: str
    filters: dict[str, int | str]
    options: dict[str, str]  # the leaderboard's metric and by; empty for other reports
    business_hours: bool  # whether times count business hours only (the toggle, where it applies)
    tables: dict[str, TableOut]


class ListedOut(BaseModel):
    """One occurrence behind a bar: its conversation, when it was counted and, for a time, its
    seconds (business-hours seconds with the toggle)."""

    conversation_id: int
    at: datetime
    seconds: float | None
    channel_id: int | None


class DrillDownOut(BaseModel):
    report: str
    metric: str
    period: str | None
    bucket: str | None
    timezone: str
    range: dict[str, str]  # preset, from, to
    filters: dict[str, int | str]
    business_hours: bool
    count: int  # the bar's number; `items` holds at most the first 500, oldest first
    total: int  # every item there is (the bar's number again); the CSV has them all
    truncated: bool  # whether `items` holds fewer than `total`
    items: list[ListedOut]


class WaitingOut(BaseModel):
    conversation_id: int
    contact: str
    waiting_since: datetime
    waiting_seconds: int
    assignee_id: int | None


class WaitingListOut(BaseModel):
    count: int
    oldest: list[WaitingOut]


class TeamMemberOut(BaseModel):
    user_id: int
    name: str
    avatar_url: str | None
    role: str
    status: str
    open: int


class UpcomingBroadcastOut(BaseModel):
    broadcast_id: int
    name: str
    scheduled_at: datetime | None


class ChannelErrorOut(BaseModel):
    channel_id: int
    name: str
    type: str
    error: str | None
    error_at: datetime | None


class WorkflowErrorOut(BaseModel):
    workflow_id: int
    name: str
    error: str | None
    error_at: datetime | None


class ChecklistStepOut(BaseModel):
    step: str
    done: bool


class DashboardOut(BaseModel):
    """Parts an agent does not see (the workspace's, not their own) are null for them."""

    scope: str  # "workspace" or "own"
    timezone: str
    generated_at: datetime
    business_hours: bool  # whether the times count business hours only
    open: int
    unassigned: int | None
    waiting: WaitingListOut
    today: dict[str, int]  # opened, closed
    # first_response_median_seconds, resolution_median_seconds (null: none measured today)
    times_today: dict[str, float | None]
    team: list[TeamMemberOut] | None
    upcoming_broadcasts: list[UpcomingBroadcastOut] | None
    channels_in_error: list[ChannelErrorOut] | None
    workflows_in_error: list[WorkflowErrorOut] | None
    # null once every step is done
    getting_started: list[ChecklistStepOut] | None
