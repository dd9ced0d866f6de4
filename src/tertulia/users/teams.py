"""Teams: named groups of members (for assignment and reporting). Names are unique per workspace
regardless of case and accents (`name_key = fold(name)`)."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tertulia.events.service import Event, actor_label, emit
from tertulia.events.types import EventType, TeamMembersChanged
from tertulia.kit.errors import Conflict, ValidationFailed
from tertulia.kit.text import fold, tidy_name
from tertulia.users.models import Membership, Team, TeamMember
from tertulia.users.permissions import Actor, Permission, access_in_workspace

MAX_TEAM_NAME = 120
MAX_TEAM_MEMBERS = 1000


@dataclass
class TeamWithMembers:
    team: Team
    member_ids: list[int]

    @property
    def id(self) -> int:
        return self.team.id

    @property
    def name(self) -> str:
        return self.team.name


def check_team_name(session: Session, workspace_id: int, name: str, *, exclude_id: int | None = None) -> str:
    cleaned = tidy_name(name or "")
    if not cleaned:
        raise ValidationFailed.field("name", "is required")
    if len(cleaned) > MAX_TEAM_NAME:
        raise ValidationFailed.field("name", f"must be at most {MAX_TEAM_NAME} characters")
    query = select(Team.id).where(Team.workspace_id == workspace_id, Team.name_key == fold(cleaned))
    if exclude_id is not None:
        query = query.where(Team.id != exclude_id)
    if session.scalar(query) is not None:
        raise Conflict(f"A team named {cleaned!r} already exists.", details={"name": "already exists"})
    return cleaned


def access_team(session: Session, actor: Actor, team_id: int, permission: Permission = Permission.MANAGE_TEAMS) -> Team:
    """The one permission-checked fetch; another workspace's team is simply not found."""
    return access_in_workspace(session, actor, Team, team_id, permission=permission, not_found="Team not found.")


def do_create_team(session: Session, actor: Actor, name: str) -> Team:
    actor.require(Permission.MANAGE_TEAMS)
    cleaned = check_team_name(session, actor.workspace_id, name)
    team = Team(workspace_id=actor.workspace_id, name=cleaned, name_key=fold(cleaned))
    session.add(team)
    session.flush()
    return team


def do_rename_team(session: Session, actor: Actor, team_id: int, name: str) -> Team:
    team = access_team(session, actor, team_id)
    cleaned = check_team_name(session, actor.workspace_id, name, exclude_id=team.id)
    team.name, team.name_key = cleaned, fold(cleaned)
    session.flush()
    return team


def do_delete_team(session: Session, actor: Actor, team_id: int) -> None:
    team = access_team(session, actor, team_id)
    session.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
    session.delete(team)
    session.flush()


def check_team_member_ids(session: Session, workspace_id: int, user_ids: Sequence[object]) -> list[int]:
    """Distinct ids, each an active member of the workspace; all bad ids are named at once."""
    if not isinstance(user_ids, list | tuple):
        raise ValidationFailed.field("user_ids", "must be a list of user ids")
    wanted: list[int] = []
    for value in user_ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationFailed.field("user_ids", f"{value!r} is not a user id")
        if value not in wanted:
            wanted.append(value)
    if len(wanted) > MAX_TEAM_MEMBERS:
        raise ValidationFailed.field("user_ids", f"a team has at most {MAX_TEAM_MEMBERS} members")
    active = set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.workspace_id == workspace_id,
                Membership.active.is_(True),
                Membership.user_id.in_(wanted),
            )
        )
    )
    missing = [user_id for user_id in wanted if user_id not in active]
    if missing:
        listed = ", ".join(str(m) for m in missing)
        raise ValidationFailed.field("user_ids", f"not active members of this workspace: {listed}")
    return wanted


def do_set_team_members(session: Session, actor: Actor, team_id: int, user_ids: Sequence[object]) -> TeamWithMembers:
    """Replace the team's members with exactly `user_ids`; a change is a `team.members_changed` event
    (a new member may take the assignments waiting in the workflows' queue for the team)."""
    team = access_team(session, actor, team_id)
    wanted = check_team_member_ids(session, actor.workspace_id, user_ids)
    current = set(session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team.id)))
    removed = current - set(wanted)
    if removed:
        session.execute(delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id.in_(removed)))
    added = [user_id for user_id in wanted if user_id not in current]
    session.add_all(TeamMember(team_id=team.id, user_id=user_id) for user_id in added)
    session.flush()
    if added or removed:
        payload = TeamMembersChanged(team_id=team.id, added_user_ids=added, removed_user_ids=sorted(removed))
        label = actor_label(actor.kind, actor.user_id, actor.token_id)
        emit(session, Event(EventType.TEAM_MEMBERS_CHANGED, actor.workspace_id, payload, actor=label))
    return TeamWithMembers(team=team, member_ids=sorted(wanted))


def list_teams(session: Session, actor: Actor) -> list[TeamWithMembers]:
    """Every team of the workspace with its member ids; any member may see the teams."""
    teams = list(session.scalars(select(Team).where(Team.workspace_id == actor.workspace_id).order_by(Team.name_key)))
    members: dict[int, list[int]] = {}
    if teams:
        rows = session.execute(
            select(TeamMember.team_id, TeamMember.user_id)
            .join(Team, Team.id == TeamMember.team_id)
            .where(Team.workspace_id == actor.workspace_id)
            .order_by(TeamMember.team_id, TeamMember.user_id)
        )
        for team_id, user_id in rows:
            members.setdefault(team_id, []).append(user_id)
    return [TeamWithMembers(team=team, member_ids=members.get(team.id, [])) for team in teams]
