"""The assignment queue: runs whose assign step found nobody who qualifies, waiting for someone.

A queued run is a run in the engine's wait state (kind "queue", with its timeout as `due_at`) and a
`workflow_queue` row written in the same transaction as that state (`sync`, from the runner's
save), so the row exists exactly while the run waits. Nothing is a delayed job.

Waking: anything that may let someone qualify wakes the workspace's queue (`wake`): the workflow
event consumer calls it for `conversation.assigned`, `conversation.unassigned` and
`conversation.closed` (an agent's load went down, or a queued conversation was taken by hand) for
`user.status_changed` to online (someone became available) and for `team.members_changed` with
someone added (a new member may take the team's assignments). The periodic sweep's
`wake_after_presence` (workspaces where an agent came online since a run's last attempt) is kept as
a safety net for online periods older than that event. The engine then tries the assignment again
under a new action key, and goes back to waiting if nobody qualifies yet.

First come, first served: an attempt gives way (`ahead`) while an older run with the same pool
(who may take it: see `engine.queue_pool`) still waits, since whoever qualifies for the newer one
qualifies for the older one too. So only the first run of each pool, its head, can be served by
a try, and a wake makes only the heads due (at the moment each joined the queue, so the runner
takes the oldest first). When a head leaves the queue (assigned, taken by hand, timed out,
stopped), the next run of its pool becomes the head and is made due at once, in the same
transaction (`_leave_head`), and the runner turns it in the same batch (`woken`). A queue of N
runs thus drains in N turns, and a wake costs a turn per pool, not one per waiting run: waking
every queued run made draining O(N²) turns, each newer run giving way again on every wake. Runs
with different pools do not hold each other up (an older run that only online agents may take
does not stop a newer one that anyone may).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from tertulia.users.models import ActivityStatus, Membership, StatusPeriod
from tertulia.workflows import engine
from tertulia.workflows.models import RunStatus, WorkflowQueueEntry, WorkflowRun

# session.info key: the runs a head's leaving made due in this transaction (see `woken`).
_WOKEN = "workflow_queue_woken"


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
            _remove(session, entry)
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
    entry = session.scalar(select(WorkflowQueueEntry).where(WorkflowQueueEntry.run_id == run_id))
    if entry is not None:
        _remove(session, entry)


def _remove(session: Session, entry: WorkflowQueueEntry) -> None:
    session.delete(entry)
    session.flush()
    _leave_head(session, entry)


def _leave_head(session: Session, gone: WorkflowQueueEntry) -> None:
    """After `gone` left: when it was its pool's head, the next run of the pool is the head now,
    and due at the moment it joined (as a wake would make it). A run that was not the head leaves
    the head as it was: nothing to wake."""
    head = _head(session, gone.workspace_id, gone.pool)
    if head is None or (head.queued_at, head.run_id) < (gone.queued_at, gone.run_id):
        return
    made_due = session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == head.run_id, WorkflowRun.status == RunStatus.WAITING)
        .values(due_at=head.queued_at)
        .execution_options(synchronize_session="evaluate")
    )
    if getattr(made_due, "rowcount", 0):
        session.info.setdefault(_WOKEN, []).append(head.run_id)


def woken(session: Session) -> list[int]:
    """The runs made due in this transaction because the head before them left, since the last
    call (the runner turns them in the batch that served the head)."""
    return list(session.info.pop(_WOKEN, []))


def _head(session: Session, workspace_id: int, pool: str) -> WorkflowQueueEntry | None:
    """The pool's first run, by the moment it joined (then run id): the only one a try may serve."""
    query = (
        select(WorkflowQueueEntry)
        .join(WorkflowRun, WorkflowRun.id == WorkflowQueueEntry.run_id)
        .where(
            WorkflowQueueEntry.workspace_id == workspace_id,
            WorkflowQueueEntry.pool == pool,
            WorkflowRun.status.in_(RunStatus.ACTIVE),
        )
        .order_by(WorkflowQueueEntry.queued_at, WorkflowQueueEntry.run_id)
    )
    return session.scalar(query.limit(1))


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
        # The plain bound on queued_at lets the index stop at this run's place: the head's check
        # reads a few rows, not the whole pool.
        query = query.where(WorkflowQueueEntry.queued_at <= own.queued_at, _before(WorkflowQueueEntry, own))
    return session.scalar(query.limit(1)) is not None


def _before(entries: Any, entry: Any) -> Any:
    """`entries` joined the queue before `entry` (the moment, then the run id)."""
    return or_(
        entries.queued_at < entry.queued_at,
        and_(entries.queued_at == entry.queued_at, entries.run_id < entry.run_id),
    )


def wake(session: Session, workspace_id: int) -> int:
    """Make the head of each of the workspace's pools due, at the moment it joined; how many."""
    heads: list[int] = []
    pool: str | None = None
    while True:  # one index seek a pool: the workspace's queue is not read through
        after = select(func.min(WorkflowQueueEntry.pool)).where(WorkflowQueueEntry.workspace_id == workspace_id)
        if pool is not None:
            after = after.where(WorkflowQueueEntry.pool > pool)
        pool = session.scalar(after)
        if pool is None:
            break
        head = _head(session, workspace_id, pool)
        if head is not None:
            heads.append(head.run_id)
    return _make_due(session, heads) if heads else 0


def wake_after_presence(session: Session) -> int:
    """Make due the pools' heads in workspaces where an agent came online after the head's last try."""
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
    # Aliases: the statement this ends up in updates workflow_runs, which would correlate.
    older, older_run = aliased(WorkflowQueueEntry), aliased(WorkflowRun)
    older_waits = (
        select(older.id)
        .join(older_run, older_run.id == older.run_id)
        .where(
            older.workspace_id == WorkflowQueueEntry.workspace_id,
            older.pool == WorkflowQueueEntry.pool,
            older.queued_at <= WorkflowQueueEntry.queued_at,
            _before(older, WorkflowQueueEntry),
            older_run.status.in_(RunStatus.ACTIVE),
        )
        .exists()
    )
    entries = select(WorkflowQueueEntry.run_id).where(WorkflowQueueEntry.attempted_at < came_online, ~older_waits)
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
