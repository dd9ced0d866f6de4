"""The Dashboard: what needs attention now, read with a handful of indexed queries.

Owners and managers (Permission.VIEW_REPORTS) see the workspace; anyone else sees the numbers of the
conversations assigned to them, and none of the workspace-wide parts (unassigned, team, broadcasts,
channels, the getting-started checklist). Counts of open conversations use the conversations'
(workspace, status) and (workspace, assignee, status) indexes; today's openings and closings come
from the reports' rollups, so no query reads messages.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from tertulia.broadcasts.models import Broadcast, BroadcastStatus
from tertulia.channels.health import Health, health_of
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation, ConversationStatus
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.reports import histogram, service
from tertulia.reports.repository import Filters
from tertulia.segments.models import Segment
from tertulia.users.models import Invitation, Membership, User
from tertulia.users.permissions import Actor, Permission
from tertulia.workflows.models import Workflow, WorkflowStatus
from tertulia.workspaces.hours import HoursHistory
from tertulia.workspaces.service import hours_history

WAITING_SHOWN = 10
BROADCASTS_SHOWN = 5
# A published workflow whose last failed run is newer than this is listed.
WORKFLOW_ERRORS_SINCE = timedelta(days=7)
CHECKLIST = ("connect_channel", "invite_teammates", "answer_message", "create_segment")
REFRESH_SECONDS = 30


@dataclass(frozen=True)
class Scope:
    workspace_id: int
    # None: the whole workspace; otherwise only the conversations assigned to this person.
    assignee_id: int | None

    @property
    def whole_workspace(self) -> bool:
        return self.assignee_id is None


def scope_of(actor: Actor) -> Scope:
    if actor.can(Permission.VIEW_REPORTS):
        return Scope(actor.workspace_id, None)
    if actor.user_id is None:
        raise NotFound("No dashboard.")
    return Scope(actor.workspace_id, actor.user_id)


def _open(scope: Scope) -> list[ColumnElement[bool]]:
    where = [Conversation.workspace_id == scope.workspace_id, Conversation.status == ConversationStatus.OPEN]
    if scope.assignee_id is not None:
        where.append(Conversation.assignee_id == scope.assignee_id)
    return where


def _waiting() -> ColumnElement[bool]:
    """A customer wrote and no person has replied since the conversation (re)opened; replies of bots,
    workflows and broadcasts do not count, as in the first-response report."""
    return and_(
        Conversation.last_incoming_at.is_not(None),
        or_(Conversation.last_agent_message_at.is_(None), Conversation.last_agent_message_at < Conversation.opened_at),
    )


def _count(session: Session, *where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count(Conversation.id)).where(*where)) or 0)


TODAY_TIMES = ("first_response", "resolution")


def _today(session: Session, scope: Scope, business_hours: bool) -> tuple[dict[str, int], dict[str, float | None]]:
    """Opened and closed today, in the workspace's time zone, and the median first response and
    resolution times of today: the Conversations report's "today" (with the business-hours toggle
    as it has it)."""
    cells = service.cells_today(
        session,
        scope.workspace_id,
        Filters(user_id=scope.assignee_id),
        ("opened", "closed", *TODAY_TIMES),
        business_hours,
    )
    counts = {metric: sum(c.count for c in cells if c.metric == metric) for metric in ("opened", "closed")}
    times: dict[str, float | None] = {}
    for metric in TODAY_TIMES:
        buckets: dict[int, tuple[int, float]] = {}
        for cell in cells:
            if cell.metric == metric and cell.bucket >= 0:
                histogram.add(buckets, cell.bucket, cell.count, cell.total)
        median = histogram.stats(buckets).median
        times[f"{metric}_median_seconds"] = None if median is None else round(median, 1)
    return counts, times


def _waiting_list(session: Session, scope: Scope, now: datetime, hours: HoursHistory | None) -> list[dict[str, Any]]:
    """The customers waiting longest; with `hours`, each wait counts only the open time of the
    business hours (the conversation's team's own, else the workspace's), as the reports' times."""
    rows = session.execute(
        select(Conversation.id, Conversation.opened_at, Conversation.assignee_id, Conversation.team_id, Contact)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(*_open(scope), _waiting())
        .order_by(Conversation.opened_at, Conversation.id)
        .limit(WAITING_SHOWN)
    )
    found = []
    for cid, opened_at, assignee_id, team_id, contact in rows:
        since = as_utc(opened_at)
        waited = (now - since).total_seconds() if hours is None else hours.business_seconds(since, now, team_id)
        found.append(
            {
                "conversation_id": int(cid),
                "contact": contact.full_name,
                "waiting_since": opened_at,
                "waiting_seconds": max(0, int(waited)),
                "assignee_id": assignee_id,
            }
        )
    return found


def check_business_hours(session: Session, workspace_id: int, business_hours: bool) -> bool:
    """The toggle as the reports have it: asking for it in a workspace without hours is a 422."""
    if business_hours and not service.has_business_hours(session, workspace_id):
        raise ValidationFailed.field("business_hours", service.NO_BUSINESS_HOURS)
    return business_hours


def _team(session: Session, workspace_id: int) -> list[dict[str, Any]]:
    open_by_person = dict(
        session.execute(
            select(Conversation.assignee_id, func.count(Conversation.id))
            .where(
                Conversation.workspace_id == workspace_id,
                Conversation.status == ConversationStatus.OPEN,
                Conversation.assignee_id.is_not(None),
            )
            .group_by(Conversation.assignee_id)
        ).all()
    )
    people = session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id, Membership.active.is_(True))
        .order_by(User.first_name, User.last_name, User.id)
    )
    return [
        {
            "user_id": user.id,
            "name": user.full_name,
            "avatar_url": user.avatar_url,
            "role": role.value,
            "status": user.activity_status.value,
            "open": int(open_by_person.get(user.id, 0)),
        }
        for user, role in people
    ]


def _broadcasts(session: Session, workspace_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Broadcast.id, Broadcast.name, Broadcast.scheduled_at)
        .where(Broadcast.workspace_id == workspace_id, Broadcast.status == BroadcastStatus.SCHEDULED)
        .order_by(Broadcast.scheduled_at, Broadcast.id)
        .limit(BROADCASTS_SHOWN)
    )
    return [{"broadcast_id": int(i), "name": str(n), "scheduled_at": at} for i, n, at in rows]


def _channels_in_error(session: Session, workspace_id: int) -> list[dict[str, Any]]:
    # A workspace has a handful of channels: their health is worked out here, as Settings shows it.
    channels = session.scalars(
        select(Channel)
        .where(Channel.workspace_id == workspace_id, Channel.active.is_(True), Channel.last_error_at.is_not(None))
        .order_by(Channel.name, Channel.id)
    )
    found = []
    for channel in channels:
        health = health_of(channel)
        if health.state == Health.ERROR:
            found.append(
                {
                    "channel_id": channel.id,
                    "name": channel.name,
                    "type": channel.type,
                    "error": health.last_error,
                    "error_at": health.last_error_at,
                }
            )
    return found


def _workflows_in_error(session: Session, workspace_id: int, now: datetime) -> list[dict[str, Any]]:
    """Published workflows whose last failed run is recent enough to still need a look."""
    rows = session.execute(
        select(Workflow.id, Workflow.name, Workflow.last_error, Workflow.last_error_at)
        .where(
            Workflow.workspace_id == workspace_id,
            Workflow.status == WorkflowStatus.PUBLISHED,
            Workflow.last_error_at >= now - WORKFLOW_ERRORS_SINCE,
        )
        .order_by(Workflow.last_error_at.desc(), Workflow.id)
    )
    return [{"workflow_id": int(i), "name": str(n), "error": e, "error_at": at} for i, n, e, at in rows]


def _exists(session: Session, query: Any) -> bool:
    return session.scalar(select(query.exists())) is True


def _checklist(session: Session, workspace_id: int) -> dict[str, bool]:
    ws = workspace_id
    teammates = select(Membership.id).where(Membership.workspace_id == ws).offset(1)
    return {
        "connect_channel": _exists(session, select(Channel.id).where(Channel.workspace_id == ws)),
        "invite_teammates": _exists(session, select(Invitation.id).where(Invitation.workspace_id == ws))
        or _exists(session, teammates),
        "answer_message": _exists(
            session,
            select(Conversation.id).where(
                Conversation.workspace_id == ws, Conversation.last_agent_message_at.is_not(None)
            ),
        ),
        # The default segments every workspace starts with have no author; a person's segment has one.
        "create_segment": _exists(
            session, select(Segment.id).where(Segment.workspace_id == ws, Segment.created_by_user_id.is_not(None))
        ),
    }


def build_dashboard(session: Session, actor: Actor, *, business_hours: bool = False) -> dict[str, Any]:
    """`business_hours`: the times (how long customers wait, today's median first response and
    resolution) count only the business hours, as the reports' toggle; a 422 without hours."""
    scope = scope_of(actor)
    in_hours = check_business_hours(session, scope.workspace_id, business_hours)
    now = utcnow()
    hours = hours_history(session, scope.workspace_id) if in_hours else None
    counts, times = _today(session, scope, in_hours)
    board: dict[str, Any] = {
        "scope": "workspace" if scope.whole_workspace else "own",
        "timezone": service.zone_of(session, scope.workspace_id).key,
        "generated_at": now,
        "business_hours": in_hours,
        "open": _count(session, *_open(scope)),
        "unassigned": None,
        "waiting": {
            "count": _count(session, *_open(scope), _waiting()),
            "oldest": _waiting_list(session, scope, now, hours),
        },
        "today": counts,
        "times_today": times,
        "team": None,
        "upcoming_broadcasts": None,
        "channels_in_error": None,
        "workflows_in_error": None,
        "getting_started": None,
    }
    if scope.whole_workspace:
        board["unassigned"] = _count(session, *_open(scope), Conversation.assignee_id.is_(None))
        board["team"] = _team(session, scope.workspace_id)
        board["upcoming_broadcasts"] = _broadcasts(session, scope.workspace_id)
        board["channels_in_error"] = _channels_in_error(session, scope.workspace_id)
        board["workflows_in_error"] = _workflows_in_error(session, scope.workspace_id, now)
        steps = _checklist(session, scope.workspace_id)
        # Shown while a step is left to do; a workspace that has done them all never sees it.
        board["getting_started"] = None if all(steps.values()) else [{"step": k, "done": steps[k]} for k in CHECKLIST]
    return board
