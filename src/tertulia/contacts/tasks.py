"""Contact imports on the queue: the job's task, and the sweep that queues interrupted jobs again.

`run_import_task` may run more than once for a job (the sweep, a consumer's start-up, a retry):
`import_runner.claim` lets only one runner hold it, and a resumed run continues after the last
committed row.
"""

from datetime import timedelta

import structlog
from huey import crontab

from tertulia.contacts import import_runner
from tertulia.kit.queue import huey, task_database

log = structlog.get_logger("tertulia.imports")


@huey.task(name="contacts.run_import")  # type: ignore[untyped-decorator]
def run_import_task(job_id: int) -> None:
    import_runner.run_import(task_database(), job_id)


def enqueue_import(job_id: int) -> None:
    try:
        run_import_task(job_id)
    except Exception:  # the job stays queued; requeue_interrupted_imports queues it again
        log.exception("import_enqueue_failed", job_id=job_id)


def requeue_interrupted_imports(*, at_start: bool = False) -> int:
    """Queue again the jobs whose runner stopped, and queued ones: at a consumer's start all of them
    (their task may have died with the last process), later only those waiting suspiciously long."""
    queued_for = timedelta(0) if at_start else import_runner.RESUME_AFTER
    ids = import_runner.interrupted_import_ids(task_database(), queued_for=queued_for)
    for job_id in ids:
        enqueue_import(job_id)
    if ids:
        log.info("imports_requeued", job_ids=ids)
    return len(ids)


@huey.periodic_task(crontab(minute="*"), name="contacts.requeue_interrupted_imports")  # type: ignore[untyped-decorator]
def requeue_interrupted_imports_task() -> int:
    return requeue_interrupted_imports()
