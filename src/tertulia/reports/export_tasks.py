"""Data exports on the queue: the export's task, the sweep that queues interrupted exports again
and removes expired files; and the rebuild of the report data that Settings > Data export starts.

`run_export_task` may run more than once for an export (the sweep, a consumer's start-up, a retry):
`export_runner.claim` lets only one runner hold it.
"""

from datetime import timedelta

import structlog
from huey import crontab

from tertulia.kit.queue import huey, task_database
from tertulia.reports import export_runner, rebuild

log = structlog.get_logger("tertulia.exports")


@huey.task(name="reports.run_export")  # type: ignore[untyped-decorator]
def run_export_task(export_id: int) -> None:
    export_runner.run_export(task_database(), export_id)


def enqueue_export(export_id: int) -> None:
    try:
        run_export_task(export_id)
    except Exception:  # the export stays queued; the sweep queues it again
        log.exception("export_enqueue_failed", export_id=export_id)


def requeue_interrupted_exports(*, at_start: bool = False) -> int:
    """Queue again queued exports and running ones whose runner stopped (at a consumer's start every
    queued one: its task may have died with the last process)."""
    queued_for = timedelta(0) if at_start else export_runner.RESUME_AFTER
    ids = export_runner.interrupted_export_ids(task_database(), queued_for=queued_for)
    for export_id in ids:
        enqueue_export(export_id)
    if ids:
        log.info("exports_requeued", export_ids=ids)
    return len(ids)


def requeue_at_start() -> int:
    return requeue_interrupted_exports(at_start=True)


@huey.periodic_task(crontab(minute="*"), name="reports.sweep_exports")  # type: ignore[untyped-decorator]
def sweep_exports_task() -> int:
    """Every minute: interrupted exports queued again, expired files removed."""
    export_runner.expire_exports(task_database())
    return requeue_interrupted_exports()


@huey.task(name="reports.rebuild")  # type: ignore[untyped-decorator]
def rebuild_task(workspace_id: int) -> int:
    """The batches of a rebuild started by Settings (`rebuild.start_in`): its events replayed."""
    replayed = rebuild.run_batches(task_database(), workspace_id)
    log.info("report_rebuild_done", workspace_id=workspace_id, events=replayed)
    return replayed


def enqueue_rebuild(workspace_id: int) -> None:
    try:
        rebuild_task(workspace_id)
    except Exception:  # the rebuild stays marked: Settings shows it and can start it again
        log.exception("report_rebuild_enqueue_failed", workspace_id=workspace_id)
