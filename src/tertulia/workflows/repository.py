"""SQL for workflows, their versions, runs, logs and effects."""

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from tertulia.contacts.models import Contact
from tertulia.workflows.models import (
    RunStatus,
    VersionState,
    Workflow,
    WorkflowEffect,
    WorkflowQueueEntry,
    WorkflowRun,
    WorkflowRunLog,
    WorkflowVersion,
)


def workflow(session: Session, workspace_id: int, workflow_id: int, *, lock: bool = False) -> Workflow | None:
    query = select(Workflow).where(Workflow.workspace_id == workspace_id, Workflow.id == workflow_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def workflows(session: Session, workspace_id: int) -> list[Workflow]:
    return list(session.scalars(select(Workflow).where(Workflow.workspace_id == workspace_id).order_by(Workflow.id)))


def version(session: Session, version_id: int | None) -> WorkflowVersion | None:
    return session.get(WorkflowVersion, version_id) if version_id is not None else None


def latest_version(session: Session, workflow_id: int) -> WorkflowVersion | None:
    return session.scalar(
        select(WorkflowVersion)
        .where(WorkflowVersion.workflow_id == workflow_id)
        .order_by(WorkflowVersion.number.desc())
        .limit(1)
    )


def published_versions(session: Session, workspace_id: int, trigger_types: Sequence[str]) -> list[WorkflowVersion]:
    return list(
        session.scalars(
            select(WorkflowVersion)
            .where(
                WorkflowVersion.workspace_id == workspace_id,
                WorkflowVersion.state == VersionState.PUBLISHED,
                WorkflowVersion.trigger_type.in_(trigger_types),
            )
            .order_by(WorkflowVersion.workflow_id)
        )
    )


def manual_workflow_ids(session: Session, workspace_id: int) -> set[int]:
    """Workflows whose newest version has a manual trigger (what a start_workflow step may name)."""
    newest = (
        select(WorkflowVersion.workflow_id, func.max(WorkflowVersion.number).label("number"))
        .where(WorkflowVersion.workspace_id == workspace_id)
        .group_by(WorkflowVersion.workflow_id)
        .subquery()
    )
    query = select(WorkflowVersion.workflow_id).join(
        newest,
        (newest.c.workflow_id == WorkflowVersion.workflow_id) & (newest.c.number == WorkflowVersion.number),
    )
    return set(session.scalars(query.where(WorkflowVersion.trigger_type == "manual")))


def active_run_counts(session: Session, workspace_id: int) -> dict[int, int]:
    query = (
        select(WorkflowRun.workflow_id, func.count())
        .where(WorkflowRun.workspace_id == workspace_id, WorkflowRun.status.in_(RunStatus.ACTIVE))
        .group_by(WorkflowRun.workflow_id)
    )
    return {int(workflow_id): int(count) for workflow_id, count in session.execute(query)}


def run(session: Session, run_id: int, *, lock: bool = False) -> WorkflowRun | None:
    query = select(WorkflowRun).where(WorkflowRun.id == run_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def runs_page(session: Session, workflow_id: int, *, before_id: int | None, limit: int) -> list[WorkflowRun]:
    query = select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id)
    if before_id is not None:
        query = query.where(WorkflowRun.id < before_id)
    return list(session.scalars(query.order_by(WorkflowRun.id.desc()).limit(limit)))


def active_run(session: Session, workflow_id: int, contact_id: int) -> WorkflowRun | None:
    return session.scalar(
        select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id, WorkflowRun.active_contact_id == contact_id)
    )


def ever_ran(session: Session, workflow_id: int, contact_id: int) -> bool:
    query = select(WorkflowRun.id).where(WorkflowRun.workflow_id == workflow_id, WorkflowRun.contact_id == contact_id)
    return session.scalar(query.limit(1)) is not None


def active_runs_of_contact(session: Session, workspace_id: int, contact_id: int) -> list[WorkflowRun]:
    return list(
        session.scalars(
            select(WorkflowRun)
            .where(
                WorkflowRun.workspace_id == workspace_id,
                WorkflowRun.contact_id == contact_id,
                WorkflowRun.status.in_(RunStatus.ACTIVE),
            )
            .order_by(WorkflowRun.id)
            .with_for_update()
        )
    )


def active_runs_of_contacts(
    session: Session, contacts: Collection[tuple[int, int]]
) -> dict[tuple[int, int], list[WorkflowRun]]:
    """`active_runs_of_contact` for several (workspace id, contact id) pairs in one query, locked in
    id order; keyed by pair, a contact without a run in progress absent."""
    if not contacts:
        return {}
    wanted = set(contacts)
    found: dict[tuple[int, int], list[WorkflowRun]] = {}
    for run in session.scalars(
        select(WorkflowRun)
        .where(
            WorkflowRun.contact_id.in_(sorted({contact_id for _, contact_id in wanted})),
            WorkflowRun.status.in_(RunStatus.ACTIVE),
        )
        .order_by(WorkflowRun.id)
        .with_for_update()
    ):
        pair = (run.workspace_id, run.contact_id)
        if pair in wanted:
            found.setdefault(pair, []).append(run)
    return found


def active_runs_of_workflow(session: Session, workflow_id: int) -> list[WorkflowRun]:
    return list(
        session.scalars(
            select(WorkflowRun)
            .where(WorkflowRun.workflow_id == workflow_id, WorkflowRun.status.in_(RunStatus.ACTIVE))
            .with_for_update()
        )
    )


def due_run_ids(session: Session, now: datetime, limit: int, *, exclude: Collection[int] = ()) -> list[int]:
    query = select(WorkflowRun.id).where(WorkflowRun.due_at <= now, WorkflowRun.status.in_(RunStatus.ACTIVE))
    if exclude:
        query = query.where(WorkflowRun.id.not_in(list(exclude)))
    return list(session.scalars(query.order_by(WorkflowRun.due_at, WorkflowRun.id).limit(limit)))


def claim_due_runs(session: Session, now: datetime, limit: int, *, exclude: Collection[int] = ()) -> list[WorkflowRun]:
    """Lock up to `limit` due runs, oldest due first, skipping runs another transaction holds
    (PostgreSQL; SQLite's writer is alone and ignores the clause)."""
    query = select(WorkflowRun).where(WorkflowRun.due_at <= now, WorkflowRun.status.in_(RunStatus.ACTIVE))
    if exclude:
        query = query.where(WorkflowRun.id.not_in(list(exclude)))
    query = query.order_by(WorkflowRun.due_at, WorkflowRun.id).limit(limit).with_for_update(skip_locked=True)
    return list(session.scalars(query))


def claim_queue_next(session: Session, run_id: int, limit: int) -> list[WorkflowRun]:
    """Lock this queued run and up to `limit` - 1 runs after it in its pool's queue, in queue order,
    skipping runs another transaction holds; their attributes read afresh."""
    entry = aliased(WorkflowQueueEntry)
    own = select(entry).where(entry.run_id == run_id).subquery()
    query = (
        select(WorkflowRun)
        .join(WorkflowQueueEntry, WorkflowQueueEntry.run_id == WorkflowRun.id)
        .join(own, (own.c.workspace_id == WorkflowQueueEntry.workspace_id) & (own.c.pool == WorkflowQueueEntry.pool))
        .where(
            WorkflowQueueEntry.queued_at >= own.c.queued_at,
            (WorkflowQueueEntry.queued_at > own.c.queued_at) | (WorkflowQueueEntry.run_id >= own.c.run_id),
            WorkflowRun.status.in_(RunStatus.ACTIVE),
        )
        .order_by(WorkflowQueueEntry.queued_at, WorkflowQueueEntry.run_id)
        .limit(limit)
        .with_for_update(of=WorkflowRun, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def load_for_runs(session: Session, runs: Sequence[WorkflowRun]) -> list[object]:
    """Load the runs' workflows, versions and contacts in three queries; later `session.get` calls
    find them in the session's identity map while the caller keeps the returned list (the map
    holds its objects weakly)."""
    if not runs:
        return []
    workflow_ids = sorted({run.workflow_id for run in runs})
    version_ids = sorted({run.version_id for run in runs})
    contact_ids = sorted({run.contact_id for run in runs})
    return [
        *session.scalars(select(Workflow).where(Workflow.id.in_(workflow_ids))),
        *session.scalars(select(WorkflowVersion).where(WorkflowVersion.id.in_(version_ids))),
        *session.scalars(select(Contact).where(Contact.id.in_(contact_ids))),
    ]


def effect_keys(session: Session, run_ids: Sequence[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {run_id: set() for run_id in run_ids}
    if run_ids:
        query = select(WorkflowEffect.run_id, WorkflowEffect.key).where(WorkflowEffect.run_id.in_(run_ids))
        for run_id, key in session.execute(query):
            found[run_id].add(key)
    return found


def next_due(session: Session) -> datetime | None:
    return session.scalar(select(func.min(WorkflowRun.due_at)).where(WorkflowRun.status.in_(RunStatus.ACTIVE)))


def effect(session: Session, run_id: int, key: str) -> WorkflowEffect | None:
    return session.scalar(select(WorkflowEffect).where(WorkflowEffect.run_id == run_id, WorkflowEffect.key == key))


def logs_of(session: Session, run_ids: Sequence[int]) -> dict[int, list[WorkflowRunLog]]:
    found: dict[int, list[WorkflowRunLog]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    query = select(WorkflowRunLog).where(WorkflowRunLog.run_id.in_(run_ids)).order_by(WorkflowRunLog.id)
    for row in session.scalars(query):
        found[row.run_id].append(row)
    return found


def clear_due(session: Session, run_ids: Sequence[int]) -> None:
    if run_ids:
        session.execute(update(WorkflowRun).where(WorkflowRun.id.in_(run_ids)).values(due_at=None))


def delete_workflow(session: Session, workflow_id: int) -> None:
    """The workflow and every row of it, children first (no reliance on foreign-key cascades)."""
    run_ids = select(WorkflowRun.id).where(WorkflowRun.workflow_id == workflow_id).scalar_subquery()
    session.execute(delete(WorkflowEffect).where(WorkflowEffect.run_id.in_(run_ids)))
    session.execute(delete(WorkflowRunLog).where(WorkflowRunLog.workflow_id == workflow_id))
    session.execute(delete(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id))
    session.execute(delete(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id))
    session.execute(delete(Workflow).where(Workflow.id == workflow_id))
    session.expire_all()
