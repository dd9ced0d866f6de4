"""Running a contact import job on the queue so that it survives the process that runs it.

A job moves `queued` -> `running` -> `done` / `failed`. Guarantees:
- One runner at a time. A runner claims the job with a conditional UPDATE (queued, or running with a
  heartbeat older than RESUME_AFTER) and fences every later write on the `updated_at` value it wrote
  last: if another runner has claimed the job since, the batch is rolled back and this runner stops.
- Progress is what is stored. Each batch of contacts commits together with the job's counters and
  a new heartbeat, so after a crash (kill -9, a lost queue task, a deploy) the next runner resumes
  after the last committed row: no row is imported twice and none is skipped.
- Rejected rows survive too: they are appended to a side file before their batch commits, tagged
  with the row count of that batch; a resumed run keeps only those of committed batches.
- Nothing is silently left running: `interrupted_import_ids` (run at consumer start and every minute)
  finds queued jobs and running ones whose heartbeat stopped, and their task is queued again. A job
  interrupted MAX_RUNS times fails with a message saying how to finish it.
- A consumer that stops (a deploy, SIGTERM) hands its jobs back: `release_running_imports` makes each
  runner stop after its current batch and set the job `queued`, so the next consumer resumes it at
  once instead of after RESUME_AFTER.
"""

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.importer import ImportOptions, ImportReport, RejectedRow, import_contacts, write_rejected_csv
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.kit.fencing import FencedRun, LostClaim, claim_job
from tertulia.kit.queue import huey
from tertulia.kit.settings import get_settings
from tertulia.users.models import Membership
from tertulia.users.permissions import Actor

log = structlog.get_logger("tertulia.imports")

# A running job whose heartbeat (a committed batch) is older than this lost its runner. Batches
# take seconds; the margin covers a slow, busy database.
RESUME_AFTER = timedelta(minutes=5)
MAX_RUNS = 5


def data_path(relative: str) -> Path:
    root = (get_settings().data_dir / "imports").resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError("import path escapes the imports directory")
    return path


def progress_path(job: ImportJob) -> Path:
    return data_path(f"{job.workspace_id}/job-{job.id}.progress.jsonl")


class _Released(Exception):
    """The consumer is stopping: the job was handed back to the queue after a committed batch."""


# Set while this process's consumer stops: runners hand their job back after the current batch, and
# no job is claimed (a worker thread may still take a task off the queue before it notices the stop).
_stopping = threading.Event()
_active: set[int] = set()
_active_lock = threading.Lock()


def release_running_imports(timeout: float = 10.0) -> None:
    """Ask this process's runners to hand their jobs back after the current batch; wait for them."""
    _stopping.set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _active_lock:
            if not _active:
                return
        time.sleep(0.05)
    log.warning("imports_not_released", job_ids=sorted(_active))


def accept_runs() -> None:
    """A consumer of this process starts: runners may claim jobs again."""
    _stopping.clear()


@dataclass
class _Progress:
    """What earlier runs of the job left in its side file."""

    runs: int
    rejected: list[RejectedRow]


def _read_progress(path: Path, committed_rows: int) -> _Progress:
    runs = 0
    rejected: list[RejectedRow] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if "run" in entry:
                runs += 1
            elif entry.get("through", committed_rows + 1) <= committed_rows:
                rejected += [RejectedRow(r["line"], r["values"], r["reasons"]) for r in entry["rows"]]
    return _Progress(runs, rejected)


def _append(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()


def claim(database: Database, job_id: int, stale_after: timedelta = RESUME_AFTER) -> datetime | None:
    """Take the job for this runner; returns the fencing token (its heartbeat) or None if it is not
    to be run here (done, failed, or running elsewhere with a live heartbeat)."""
    if _stopping.is_set() and not huey.immediate:  # inline (immediate) runs have no consumer to stop
        return None
    return claim_job(
        database, ImportJob, job_id, queued=ImportStatus.QUEUED, running=ImportStatus.RUNNING, stale_after=stale_after
    )


def _actor_for(session: Session, job: ImportJob) -> Actor:
    membership = session.scalar(
        select(Membership).where(Membership.workspace_id == job.workspace_id, Membership.user_id == job.user_id)
    )
    if membership is None or not membership.active:
        raise ValidationFailed.field("user", "the person who started the import is no longer a member")
    return Actor(workspace_id=job.workspace_id, kind="user", user_id=job.user_id, role=membership.role)


def run_import(database: Database, job_id: int, stale_after: timedelta = RESUME_AFTER) -> None:
    """Run (or resume) the job if it is this runner's to run. Never raises for a failed import: the
    failure is recorded on the job."""
    token = claim(database, job_id, stale_after)
    if token is None:
        return
    run = FencedRun(database, ImportJob, job_id, running=ImportStatus.RUNNING, failed=ImportStatus.FAILED, token=token)
    with _active_lock:
        _active.add(job_id)
    try:
        _run(run)
    except _Released:
        log.info("import_released", job_id=job_id)
    except LostClaim:
        log.warning("import_taken_over", job_id=job_id)
    except Exception as exc:
        log.exception("import_failed", job_id=job_id)
        run.fail(exc.message if isinstance(exc, DomainError) else "The import failed unexpectedly.")
    finally:
        with _active_lock:
            _active.discard(job_id)


def _run(run: FencedRun) -> None:
    session = run.database.session()
    try:
        job = session.get(ImportJob, run.job_id)
        assert job is not None  # claimed a moment ago; jobs are deleted only with their workspace
        side_file = progress_path(job)
        earlier = _read_progress(side_file, job.processed_rows)
        if earlier.runs >= MAX_RUNS:
            raise ValidationFailed.field(
                "job",
                f"the import was interrupted {earlier.runs} times, at row {job.processed_rows}; "
                "import the file again with 'update existing contacts' to finish it",
            )
        _append(side_file, {"run": run.token.isoformat(), "from_row": job.processed_rows})
        actor = _actor_for(session, job)
        base = {
            "created_count": job.created_count,
            "updated_count": job.updated_count,
            "unchanged_count": job.unchanged_count,
        }
        options = ImportOptions(
            mapping=job.mapping,
            update_existing=job.update_existing,
            workers=0,
            skip_rows=job.processed_rows,
            batch_size=get_settings().import_batch_size,
        )
        path = data_path(job.file_path)
        workspace_id = job.workspace_id
        session.expunge(job)
        stored_rejected = 0

        def counters(report: ImportReport) -> dict[str, Any]:
            return {
                "total_rows": report.total_rows,
                "processed_rows": report.processed_rows,
                "created_count": base["created_count"] + report.created,
                "updated_count": base["updated_count"] + report.updated + report.merged,
                "unchanged_count": base["unchanged_count"] + report.unchanged,
                "rejected_count": len(earlier.rejected) + len(report.rejected),
            }

        def on_progress(done: int, total: int) -> None:
            if done == options.skip_rows:  # the start: show the total before the first batch
                run.write(session, total_rows=total)
                session.commit()

        def on_batch_written(report: ImportReport) -> None:
            nonlocal stored_rejected
            new = report.rejected[stored_rejected:]
            if new:
                rows = [{"line": r.line, "values": r.values, "reasons": r.reasons} for r in new]
                _append(side_file, {"through": report.processed_rows, "rows": rows})
            stored_rejected = len(report.rejected)
            if _stopping.is_set() and report.processed_rows < report.total_rows:
                run.write(session, **counters(report), status=ImportStatus.QUEUED)
                session.commit()
                raise _Released
            run.write(session, **counters(report))
            session.commit()

        report = import_contacts(
            session, actor, path, options, on_progress=on_progress, on_batch_written=on_batch_written
        )
        report.rejected[:0] = earlier.rejected
        report_path = None
        if report.rejected:
            report_path = f"{workspace_id}/{secrets.token_urlsafe(18)}-rejected.csv"
            target = data_path(report_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_rejected_csv(report, target)
        values = counters(report)
        values["rejected_count"] = len(report.rejected)
        run.write(session, **values, status=ImportStatus.DONE, finished_at=utcnow(), report_path=report_path)
        session.commit()
        side_file.unlink(missing_ok=True)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def interrupted_import_ids(
    database: Database, stale_after: timedelta = RESUME_AFTER, *, queued_for: timedelta = RESUME_AFTER
) -> list[int]:
    """Jobs to queue again: those queued for `queued_for` (their task may be lost; a consumer that
    starts passes 0) and running ones whose heartbeat stopped `stale_after` ago. Queuing one twice
    is harmless: only one runner can claim it."""
    now = utcnow()
    cutoff = now - stale_after
    with database.transaction(write=False) as session:
        return list(
            session.scalars(
                select(ImportJob.id)
                .where(
                    or_(
                        (ImportJob.status == ImportStatus.QUEUED) & (ImportJob.updated_at <= now - queued_for),
                        (ImportJob.status == ImportStatus.RUNNING) & (ImportJob.updated_at < cutoff),
                    )
                )
                .order_by(ImportJob.id)
            )
        )
