"""Contact imports started from the web app: the uploaded file, the chosen mapping, and a job row that
records progress so a reload (or another browser) shows where the import is.

The job runs in a background thread started after the request's transaction commits. Each batch of
contacts is committed together with the job's counters, so progress on screen is always what is
stored. A process that dies mid-import leaves the job `running`; `stale` jobs are reported as failed
when shown, and rerunning the file with "update existing" finishes it safely.
"""

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.importer import (
    ImportOptions,
    ImportReport,
    guess_mapping,
    import_contacts,
    open_source,
    write_rejected_csv,
)
from tertulia.contacts.repository import custom_fields
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database, database_of, on_commit
from tertulia.kit.errors import DomainError, NotFound, ValidationFailed
from tertulia.kit.settings import get_settings
from tertulia.users.models import Membership
from tertulia.users.permissions import Actor, Permission

log = structlog.get_logger("tertulia.imports")

MAX_IMPORT_BYTES = 50 * 1024 * 1024
PREVIEW_ROWS = 5


def data_path(relative: str) -> Path:
    root = (get_settings().data_dir / "imports").resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError("import path escapes the imports directory")
    return path


def check_upload(filename: str, data: bytes) -> None:
    if not data:
        raise ValidationFailed.field("file", "is empty")
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationFailed.field("file", f"is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    if not filename.lower().endswith((".csv", ".txt", ".tsv")):
        raise ValidationFailed.field("file", "must be a CSV file")


def do_create_import(session: Session, actor: Actor, filename: str, data: bytes) -> ImportJob:
    """Store the upload and read its header so that a broken file is refused now, not later."""
    actor.require(Permission.IMPORT_CONTACTS)
    check_upload(filename, data)
    relative = f"{actor.workspace_id}/{secrets.token_urlsafe(18)}.csv"
    path = data_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        preview_file(path)
    except ValidationFailed:
        path.unlink(missing_ok=True)
        raise
    job = ImportJob(
        workspace_id=actor.workspace_id,
        user_id=actor.user_id,
        filename=Path(filename).name[:255] or "contacts.csv",
        file_path=relative,
        status=ImportStatus.UPLOADED,
    )
    session.add(job)
    session.flush()
    return job


@dataclass
class FilePreview:
    headers: list[str]
    rows: list[list[str]]


def preview_file(path: Path, rows: int = PREVIEW_ROWS) -> FilePreview:
    source = open_source(path, encoding=None, delimiter=None)
    try:
        records = source.rows()
        try:
            first = next(records, None)
            if first is None:
                raise ValidationFailed.field("file", "has no header row")
            headers = [h.strip() for h in first[1]]
            sample: list[list[str]] = []
            for _line, cells in records:
                sample.append(cells)
                if len(sample) >= rows:
                    break
        finally:
            records.close()
    except UnicodeError as exc:
        raise ValidationFailed.field("file", "could not be read as text") from exc
    finally:
        source.close()
    return FilePreview(headers, sample)


def access_import(session: Session, actor: Actor, job_id: int) -> ImportJob:
    actor.require(Permission.IMPORT_CONTACTS)
    job = session.scalar(select(ImportJob).where(ImportJob.workspace_id == actor.workspace_id, ImportJob.id == job_id))
    if job is None:
        raise NotFound(f"No import {job_id}.")
    return job


def guessed_mapping(session: Session, actor: Actor, headers: list[str]) -> dict[str, str]:
    return guess_mapping(headers, custom_fields(session, actor.workspace_id))


def do_start_import(
    session: Session, actor: Actor, job: ImportJob, mapping: dict[str, str], *, update_existing: bool
) -> ImportJob:
    """Check the mapping against the file with a dry run of the header, then start after commit."""
    actor.require(Permission.IMPORT_CONTACTS)
    if job.status != ImportStatus.UPLOADED:
        raise ValidationFailed.field("job", "this import has already been started")
    from tertulia.contacts.importer import resolve_mapping

    headers = preview_file(data_path(job.file_path), rows=0).headers
    resolve_mapping(headers, custom_fields(session, actor.workspace_id), mapping)
    job.mapping = mapping
    job.update_existing = update_existing
    job.status = ImportStatus.RUNNING
    job.started_at = utcnow()
    session.flush()
    database = database_of(session)
    job_id = job.id
    on_commit(session, lambda: start_in_background(database, job_id))
    return job


_threads: set[threading.Thread] = set()
_threads_lock = threading.Lock()


def start_in_background(database: Database, job_id: int) -> None:
    thread = threading.Thread(target=_run_safely, args=(database, job_id), name=f"import-{job_id}", daemon=True)
    with _threads_lock:
        _threads.add(thread)
    thread.start()


def wait_for_background_imports(timeout: float = 30.0) -> None:
    """Tests call this before emptying tables, so a running import cannot touch the next test."""
    with _threads_lock:
        running = list(_threads)
    for thread in running:
        thread.join(timeout)


def _run_safely(database: Database, job_id: int) -> None:
    try:
        run_import(database, job_id)
    except Exception as exc:
        log.exception("import_failed", job_id=job_id)
        message = exc.message if isinstance(exc, DomainError) else "The import failed unexpectedly."
        try:
            with database.transaction() as session:
                job = session.get(ImportJob, job_id)
                if job is not None:
                    job.status = ImportStatus.FAILED
                    job.error = message[:2000]
                    job.finished_at = utcnow()
        except Exception:
            log.exception("import_failure_not_recorded", job_id=job_id)
    finally:
        with _threads_lock:
            _threads.discard(threading.current_thread())


def _actor_for(session: Session, job: ImportJob) -> Actor:
    membership = session.scalar(
        select(Membership).where(Membership.workspace_id == job.workspace_id, Membership.user_id == job.user_id)
    )
    if membership is None or not membership.active:
        raise ValidationFailed.field("user", "the person who started the import is no longer a member")
    return Actor(workspace_id=job.workspace_id, kind="user", user_id=job.user_id, role=membership.role)


def _record(job: ImportJob, report: ImportReport) -> None:
    job.total_rows = report.total_rows
    job.processed_rows = report.processed_rows
    job.created_count = report.created
    job.updated_count = report.updated + report.merged
    job.unchanged_count = report.unchanged
    job.rejected_count = len(report.rejected)
    job.updated_at = utcnow()


def run_import(database: Database, job_id: int) -> None:
    session = database.session()
    try:
        job = session.get(ImportJob, job_id)
        if job is None or job.status != ImportStatus.RUNNING:
            return
        actor = _actor_for(session, job)
        options = ImportOptions(mapping=job.mapping, update_existing=job.update_existing, workers=0)

        def on_progress(done: int, total: int) -> None:
            job.total_rows = total
            job.processed_rows = done

        def on_batch_written(report: ImportReport) -> None:
            _record(job, report)
            session.commit()

        report = import_contacts(
            session,
            actor,
            data_path(job.file_path),
            options,
            on_progress=on_progress,
            on_batch_written=on_batch_written,
        )
        _record(job, report)
        if report.rejected:
            relative = f"{job.workspace_id}/{secrets.token_urlsafe(18)}-rejected.csv"
            target = data_path(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_rejected_csv(report, target)
            job.report_path = relative
        job.status = ImportStatus.DONE
        job.finished_at = utcnow()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def job_summary(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status.value,
        "percent": job.percent,
        "total": job.total_rows,
        "processed": job.processed_rows,
        "created": job.created_count,
        "updated": job.updated_count,
        "unchanged": job.unchanged_count,
        "rejected": job.rejected_count,
    }
