"""JSON endpoints for the workspace's business hours and auto-close. Reading needs a member or a
token; changing needs `manage_workspace` (owners and managers; API tokens cannot change settings).

GET/PUT /api/v1/workspace/business-hours              the workspace's current hours
GET/PUT /api/v1/teams/{team_id}/business-hours        a team's ({"follow_workspace": true} drops its own)
GET/PUT /api/v1/workspace/auto-close                  {"minutes": null | 30..20160}

A refusal is 422 with the field path of each problem (`week.monday[1]`, `holidays[0].date`).
"""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.types import ID
from tertulia.users.session_auth import SessionOrTokenActor as ApiActor
from tertulia.workspaces import service
from tertulia.workspaces.hours import BusinessHours

router = APIRouter(prefix="/api/v1", tags=["workspace"], route_class=CheckedInputRoute, responses=API_ERRORS)


class Block(BaseModel):
    start: str = Field(examples=["09:00"])
    end: str = Field(examples=["14:00"], description="24:00 for the end of the day; never before start")


class Holiday(BaseModel):
    date: str = Field(examples=["2026-12-25"])
    name: str = ""


class BusinessHoursBody(BaseModel):
    enabled: bool = Field(True, description="false: always open")
    timezone: str | None = Field(None, description="IANA zone; the workspace's when left out")
    week: dict[str, list[Block]] = Field(default_factory=dict, description="monday ... sunday")
    holidays: list[Holiday] = Field(default_factory=list)


class BusinessHoursOut(BaseModel):
    enabled: bool
    timezone: str
    week: dict[str, list[Block]]
    holidays: list[Holiday]


class TeamBusinessHoursBody(BusinessHoursBody):
    follow_workspace: bool = False


class TeamBusinessHoursOut(BusinessHoursOut):
    follow_workspace: bool


class AutoCloseBody(BaseModel):
    minutes: int | None = Field(None, description="null: off; else 30 minutes to 14 days (20160)")


def _out(hours: BusinessHours) -> BusinessHoursOut:
    return BusinessHoursOut.model_validate(hours.to_dict())


def _team_out(session: DbSession, workspace_id: int, team_id: int) -> TeamBusinessHoursOut:
    own = service.current_hours(session, workspace_id, team_id)
    effective = own or service.current_hours(session, workspace_id)
    assert effective is not None
    return TeamBusinessHoursOut(**effective.to_dict(), follow_workspace=own is None)


@router.get("/workspace/business-hours", response_model=BusinessHoursOut)
def get_business_hours(session: DbSession, actor: ApiActor) -> BusinessHoursOut:
    hours = service.current_hours(session, actor.workspace_id)
    assert hours is not None
    return _out(hours)


@router.put("/workspace/business-hours", response_model=BusinessHoursOut)
def put_business_hours(session: DbSession, actor: ApiActor, body: BusinessHoursBody) -> BusinessHoursOut:
    return _out(service.do_set_business_hours(session, actor, body.model_dump()))


@router.get("/teams/{team_id}/business-hours", response_model=TeamBusinessHoursOut)
def get_team_business_hours(session: DbSession, actor: ApiActor, team_id: ID) -> TeamBusinessHoursOut:
    service.check_team_of(session, actor, team_id)
    return _team_out(session, actor.workspace_id, team_id)


@router.put("/teams/{team_id}/business-hours", response_model=TeamBusinessHoursOut)
def put_team_business_hours(
    session: DbSession, actor: ApiActor, team_id: ID, body: TeamBusinessHoursBody
) -> TeamBusinessHoursOut:
    if body.follow_workspace:
        service.do_follow_workspace_hours(session, actor, team_id)
    else:
        service.do_set_business_hours(session, actor, body.model_dump(exclude={"follow_workspace"}), team_id=team_id)
    return _team_out(session, actor.workspace_id, team_id)


@router.get("/workspace/auto-close", response_model=AutoCloseBody)
def get_auto_close(session: DbSession, actor: ApiActor) -> AutoCloseBody:
    return AutoCloseBody(minutes=service.get_workspace(session, actor.workspace_id).auto_close_minutes)


@router.put("/workspace/auto-close", response_model=AutoCloseBody)
def put_auto_close(session: DbSession, actor: ApiActor, body: AutoCloseBody) -> AutoCloseBody:
    return AutoCloseBody(minutes=service.do_set_auto_close(session, actor, body.minutes).auto_close_minutes)
