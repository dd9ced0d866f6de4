"""REST API v1: the workspace's members and teams (read only)."""

from fastapi import APIRouter

from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.users import service, teams
from tertulia.users.auth import ApiActor
from tertulia.users.models import ActivityStatus
from tertulia.users.schemas import MemberList, MemberOut, TeamList, TeamOut

router = APIRouter(prefix="/api/v1", tags=["users"], route_class=CheckedInputRoute, responses=API_ERRORS)


@router.get("/users", response_model=MemberList)
def list_users(session: DbSession, actor: ApiActor, active: bool | None = None) -> MemberList:
    """Members of the workspace with their role and whether their membership is active."""
    members = service.list_members(session, actor, include_inactive=active is not True)
    if active is False:
        members = [m for m in members if not m.active]
    return MemberList(
        items=[
            MemberOut(
                id=m.user.id,
                email=m.user.email,
                first_name=m.user.first_name,
                last_name=m.user.last_name,
                role=m.role,
                active=m.active,
                activity_status=ActivityStatus(m.user.activity_status),
                language=m.user.language,
                timezone=m.user.timezone,
                avatar_url=m.user.avatar_url,
                created_at=m.membership.created_at,
            )
            for m in members
        ]
    )


@router.get("/teams", response_model=TeamList)
def list_teams(session: DbSession, actor: ApiActor) -> TeamList:
    return TeamList(
        items=[TeamOut(id=t.id, name=t.name, member_ids=t.member_ids) for t in teams.list_teams(session, actor)]
    )
