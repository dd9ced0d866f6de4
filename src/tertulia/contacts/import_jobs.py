"""Contact imports started from the web app: the uploaded file, the chosen mapping, and a job row that
records progress so a reload (or another browser) shows where the import is.

Starting a job queues it (`contacts.tasks.run_import_task`, after the request's transaction commits);
`contacts.import_runner` runs it on whichever consumer takes it, resumes it after a crash, and
commits each batch of contacts with the job's counters, so progress on screen is what is stored.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tertulia.contacts import tasks
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.import_runner import data_path
from tertulia.contacts.importer import ImportReport, check_headers, guess_mapping, open_source, resolve_mapping
from tertulia.contacts.repository import custom_fields
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.text import tidy_name
from tertulia.users.permissions import Actor, Permission, access_in_workspace

__all__ = [
    "MAX_IMPORT_BYTES",
    "FilePreview",
    "access_import",
    "check_upload",
    "data_path",
    "do_create_import",
    "do_start_import",
    "guessed_mapping",
    "job_summary",
    "preview_file",
    "record_command_line_import",
]

MAX_IMPORT_BYTES = 50 * 1024 * 1024
PREVIEW_ROWS = 5


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
        filename=tidy_name(Path(filename).name)[:255] or "contacts.csv",
        file_path=relative,
        status=ImportStatus.UPLOADED,
    )
    session.add(job)
    session.flush()
    return job


def record_command_line_import(
    session: Session,
    workspace_id: int,
    filename: str,
    report: ImportReport,
    *,
    started_at: datetime,
    error: str | None = None,
) -> ImportJob:
    """The job row of an import run by `tertulia contacts import`, written when it ends: done, or
    failed with what its committed batches wrote. It has no stored file and no runner: it is the
    record that shows the import in the imports history and counts its contacts in the reports,
    as a web import's row does. Written in the transaction of the import's last batch, so the
    counts are those of what was committed."""
    job = ImportJob(
        workspace_id=workspace_id,
        user_id=None,
        filename=tidy_name(Path(filename).name)[:255] or "contacts.csv",
        file_path="",
        mapping=report.mapping,
        update_existing=report.update_existing,
        status=ImportStatus.FAILED if error else ImportStatus.DONE,
        total_rows=report.total_rows,
        processed_rows=report.processed_rows,
        created_count=report.created,
        updated_count=report.updated + report.merged,
        unchanged_count=report.unchanged,
        rejected_count=len(report.rejected),
        error=error[:2000] if error else None,
        started_at=started_at,
        finished_at=utcnow(),
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
            headers = check_headers(first[1])
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
    return access_in_workspace(
        session, actor, ImportJob, job_id, permission=Permission.IMPORT_CONTACTS, not_found=f"No import {job_id}."
    )


def guessed_mapping(session: Session, actor: Actor, headers: list[str]) -> dict[str, str]:
    return guess_mapping(headers, custom_fields(session, actor.workspace_id))


def do_start_import(
    session: Session, actor: Actor, job: ImportJob, mapping: dict[str, str], *, update_existing: bool
) -> ImportJob:
    """Check the mapping against the file with a dry run of the header, then queue it after commit."""
    actor.require(Permission.IMPORT_CONTACTS)
    if job.status != ImportStatus.UPLOADED:
        raise ValidationFailed.field("job", "this import has already been started")
    headers = preview_file(data_path(job.file_path), rows=0).headers
    resolve_mapping(headers, custom_fields(session, actor.workspace_id), mapping)
    job.mapping = mapping
    job.update_existing = update_existing
    job.status = ImportStatus.QUEUED
    job.started_at = utcnow()
    session.flush()
    job_id = job.id
    on_commit(session, lambda: tasks.enqueue_import(job_id))
    return job


def job_summary(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": (ImportStatus.RUNNING if job.status == ImportStatus.QUEUED else job.status).value,
        "percent": job.percent,
        "total": job.total_rows,
        "processed": job.processed_rows,
        "created": job.created_count,
        "updated": job.updated_count,
        "unchanged": job.unchanged_count,
        "rejected": job.rejected_count,
    }
