"""The assignment queue: runs whose assign step found nobody who qualifies, waiting for someone.

A queued run is a run in the engine's wait state (kind "queue", with its timeout as `due_at`) and a
`workflow_queue` row written in the same transaction as that state (`sync`, from the runner's
save), so the row exists exactly while the run waits. Nothing is a delayed job.

Waking: anything that may let someone qualify makes the workspace's queued runs due
(`wake`): the workflow event consumer calls it for `conversation.assigned`, `conversation.unassigned`
and `conversation.closed` (an agent's load went down, or a queued conversation was taken by hand)
for `user.status_changed` to online (someone became available) and for `team.members_changed` with
someone added (a new member may take the team's assignments). The periodic sweep's
`wake_after_presence` (workspaces where an agent came online since a run's last attempt) is kept as
a safety net for online periods older than that event. A woken run's due time is the moment it
joined the queue, so the runner takes the oldest first; the engine then tries the assignment again
under a new action key, and goes back to waiting if nobody qualifies yet.

First come, first served, whatever order the runner takes runs in: an attempt gives way
(`ahead`) while an older run with the same pool (who may take it: see `engine.queue_pool`) still
waits, since whoever qualifies for the newer one qualifies for the older one too. Runs with
different pools do not hold each other up (an older run that only online agents may take does not
stop a newer one that anyone may).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tertulia.users.models import ActivityStatus, Membership, StatusPeriod
from tertulia.workflows import engine
from tertulia.workflows.models import RunStatus, WorkflowQueueEntry, WorkflowRun


def is_queued(state: Mapping[str, Any]) -> bool:
    """Whether a stored run state waits in the queue (the runner syncs the row only around these)."""
    wait = state.get("wait")
    return isinstance(wait, Mapping) and wait.get("kind") == "queue"


def sync(session: Session, run: WorkflowRun, state: engine.RunState, now: datetime) -> None:
    """Make the run's queue row match its state: present while it waits in the queue, gone otherwise."""
    entry = session.scalar(select(WorkflowQueueEntry).where(WorkflowQueueEntry.run_id == run.id))
    wait = state.wait
    queued = state.status in engine.ACTIVE and wait is not None and wait.get("kind") == "queue"
    if not queued:
        if entry is not None:
            session.delete(entry)
            session.flush()
        return
    assert wait is not None
    if entry is None:
        session.add(
            WorkflowQueueEntry(
                workspace_id=run.workspace_id,
                run_id=run.id,
                step_id=str(state.at),
                pool=str(wait["pool"]),
                queued_at=datetime.fromisoformat(wait["since"]),
                attempted_at=now,
            )
        )
    else:
        entry.attempted_at = now
    session.flush()


def leave(session: Session, run_id: int) -> None:
    """A run that ends (stopped by a person or with its workflow) leaves the queue."""
    session.execute(delete(WorkflowQueueEntry).where(WorkflowQueueEntry.run_id == run_id))


def ahead(session: Session, run: WorkflowRun, pool: str) -> bool:
    """Whether an older run of the workspace waits in the queue for the same pool."""
    own = session.scalar(select(WorkflowQueueEntry).where(WorkflowQueueEntry.run_id == run.id))
    query = (
        select(WorkflowQueueEntry.id)
        .join(WorkflowRun, WorkflowRun.id == WorkflowQueueEntry.run_id)
        .where(
            WorkflowQueueEntry.workspace_id == run.workspace_id,
            WorkflowQueueEntry.pool == pool,
            WorkflowQueueEntry.run_id != run.id,
            WorkflowRun.status.in_(RunStatus.ACTIVE),
        )
    )
    if own is not None:
        earlier = (WorkflowQueueEntry.queued_at < own.queued_at) | (
            (WorkflowQueueEntry.queued_at == own.queued_at) & (WorkflowQueueEntry.run_id < run.id)
        )
        query = query.where(earlier)
    return session.scalar(query.limit(1)) is not None


def wake(session: Session, workspace_id: int) -> int:
    """Make the workspace's queued runs due, each at the moment it joined the queue; how many."""
    entries = select(WorkflowQueueEntry.run_id).where(WorkflowQueueEntry.workspace_id == workspace_id)
    return _make_due(session, entries)


def wake_after_presence(session: Session) -> int:
    """Make due the queued runs of workspaces where an agent came online after the run's last try."""
    came_online = (
        select(func.max(StatusPeriod.started_at))
        .join(Membership, Membership.user_id == StatusPeriod.user_id)
        .where(
            Membership.workspace_id == WorkflowQueueEntry.workspace_id,
            Membership.active,
            StatusPeriod.status == ActivityStatus.ONLINE,
        )
        .scalar_subquery()
    )
    entries = select(WorkflowQueueEntry.run_id).where(WorkflowQueueEntry.attempted_at < came_online)
    return _make_due(session, entries)


def _make_due(session: Session, run_ids: Any) -> int:
    queued_at = select(WorkflowQueueEntry.queued_at).where(WorkflowQueueEntry.run_id == WorkflowRun.id)
    result = session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id.in_(run_ids), WorkflowRun.status == RunStatus.WAITING)
        .values(due_at=queued_at.scalar_subquery())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def waiting(session: Session, workspace_id: int) -> list[WorkflowQueueEntry]:
    """The workspace's queue, oldest first."""
    query = select(WorkflowQueueEntry).where(WorkflowQueueEntry.workspace_id == workspace_id)
    return list(session.scalars(query.order_by(WorkflowQueueEntry.queued_at, WorkflowQueueEntry.run_id)))
