"""Settings > Data export and /api/v1/exports: a workspace's contacts, conversations, messages and
failed messages for a date range (at most a year, in the workspace's time zone), as CSV files in
one zip built by a queued job (`reports.export_runner`), downloadable until it expires.

Rules:
- One export at a time per workspace: a request while one is queued or running is a 409
  (`export_running`); a partial unique index holds the line when two requests race.
- The file lives under the data directory (exports/<workspace>/<random>.zip), never in the
  database; it expires EXPIRE_AFTER after it is finished and the sweep removes it.
- Cells are neutralised against spreadsheet formula injection (`reports.csvfile`).
"""

from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.reports import export_tasks
from tertulia.reports.export_models import ACTIVE_STATUSES, DataExport, ExportStatus
from tertulia.reports.export_runner import EXPIRE_AFTER, FILES, export_path
from tertulia.reports.service import MAX_DAYS
from tertulia.users.permissions import Actor, Permission, access_in_workspace

RECENT = 10

__all__ = ["EXPIRE_AFTER", "FILES", "export_path"]


def check_request(first_day: date | None, last_day: date | None, files: list[str] | None) -> list[str]:
    """The chosen files in FILES order; the range is whole days, at most MAX_DAYS of them."""
    if first_day is None:
        raise ValidationFailed.field("from", "is required")
    if last_day is None:
        raise ValidationFailed.field("to", "is required")
    if last_day < first_day:
        raise ValidationFailed.field("to", "must not be before from")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise ValidationFailed.field("to", f"a range is at most {MAX_DAYS} days")
    chosen = files if files else list(FILES)
    unknown = [name for name in chosen if name not in FILES]
    if unknown:
        raise ValidationFailed.field("files", f"must be among {', '.join(FILES)}")
    return [name for name in FILES if name in chosen]


def running_export(session: Session, workspace_id: int) -> DataExport | None:
    return session.scalar(
        select(DataExport).where(DataExport.workspace_id == workspace_id, DataExport.status.in_(ACTIVE_STATUSES))
    )


def _busy(running: DataExport) -> Conflict:
    return Conflict(
        "An export of this workspace is already running; wait for it to finish.",
        code="export_running",
        details={"export_id": running.id},
    )


def do_create_export(
    session: Session, actor: Actor, first_day: date | None, last_day: date | None, files: list[str] | None = None
) -> DataExport:
    """Record the export and queue its job after commit."""
    actor.require(Permission.EXPORT_DATA)
    chosen = check_request(first_day, last_day, files)
    assert first_day is not None  # checked above
    assert last_day is not None
    running = running_export(session, actor.workspace_id)
    if running is not None:
        raise _busy(running)
    export = DataExport(
        workspace_id=actor.workspace_id,
        user_id=actor.user_id,
        first_day=first_day,
        last_day=last_day,
        files=chosen,
        status=ExportStatus.QUEUED,
    )
    try:
        with session.begin_nested():
            session.add(export)
            session.flush()
    except IntegrityError:
        # Another request took the slot between the check and the insert.
        running = running_export(session, actor.workspace_id)
        if running is None:
            raise
        raise _busy(running) from None
    export_id = export.id
    on_commit(session, lambda: export_tasks.enqueue_export(export_id))
    return export


def access_export(session: Session, actor: Actor, export_id: int) -> DataExport:
    return access_in_workspace(
        session, actor, DataExport, export_id, permission=Permission.EXPORT_DATA, not_found=f"No export {export_id}."
    )


def recent_exports(session: Session, actor: Actor, limit: int = RECENT) -> list[DataExport]:
    actor.require(Permission.EXPORT_DATA)
    query = (
        select(DataExport)
        .where(DataExport.workspace_id == actor.workspace_id)
        .order_by(DataExport.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def downloadable(export: DataExport, now: datetime | None = None) -> bool:
    moment = now or utcnow()
    return (
        export.status == ExportStatus.DONE
        and export.file_path is not None
        and export.expires_at is not None
        and export.expires_at > moment
    )


def download_file(session: Session, actor: Actor, export_id: int) -> tuple[Path, str]:
    """The file to send and the name the browser saves it as."""
    export = access_export(session, actor, export_id)
    if not downloadable(export) or export.file_path is None:
        code = "export_expired" if export.status in (ExportStatus.DONE, ExportStatus.EXPIRED) else "export_not_ready"
        message = "This export has expired." if code == "export_expired" else "This export is not ready."
        raise NotFound(message, code=code, details={"status": export.status.value})
    path = export_path(export.file_path)
    if not path.exists():
        raise NotFound("This export's file is gone.", code="export_expired", details={"status": "expired"})
    return path, f"export-{export.first_day.isoformat()}-{export.last_day.isoformat()}.zip"


def summary(export: DataExport, now: datetime | None = None) -> dict[str, Any]:
    """The API's and the page's view of an export."""
    ready = downloadable(export, now)
    return {
        "id": export.id,
        "status": export.status.value,
        "from": export.first_day.isoformat(),
        "to": export.last_day.isoformat(),
        "files": list(export.files),
        "percent": export.percent,
        "processed_rows": export.processed_rows,
        "total_rows": export.total_rows,
        "size_bytes": export.size_bytes,
        "error": export.error,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "expires_at": export.expires_at,
        "download_url": f"/api/v1/exports/{export.id}/download" if ready else None,
    }


def has_active(session: Session, workspace_id: int) -> bool:
    return bool(
        session.scalar(
            select(exists().where(DataExport.workspace_id == workspace_id, DataExport.status.in_(ACTIVE_STATUSES)))
        )
    )
