"""Running a data export on the queue so that it survives the process that runs it.

An export moves `queued` -> `running` -> `done` (then `expired`) or `failed`. Guarantees:
- One runner at a time: a runner claims the export with a conditional UPDATE (queued, or running
  with a heartbeat older than RESUME_AFTER) and fences every later write on the heartbeat it wrote
  last; a runner that lost the export stops and removes its own partial file.
- A crash leaves no half file behind as the result: each run writes the zip under a name of its own
  (`<export>-<run>.part`) and renames it into place only when complete, in the same step as the row
  is marked done. A re-run starts the zip again from the first row (an export reads, it changes
  nothing, so starting over is always right) and removes the parts earlier runs left.
- Memory stays flat: rows are read in keyset pages of plain rows and written into the zip entry as
  they come (`ZipFile.open(name, "w")` streams, zip64 for big files); progress is written every page.
- Nothing is silently left running: `interrupted_export_ids` (consumer start and every minute) finds
  queued exports and running ones whose heartbeat stopped; an export interrupted MAX_RUNS times fails.
"""

import csv
import io
import secrets
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.contacts.exporter import export_contacts
from tertulia.contacts.models import Contact
from tertulia.conversations.models import ClosingCategory, Conversation, Direction, Message
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.fencing import FencedRun, LostClaim, claim_job
from tertulia.kit.settings import get_settings
from tertulia.reports.csvfile import cell
from tertulia.reports.export_models import DataExport, ExportStatus
from tertulia.reports.models import ConversationFact
from tertulia.users.models import Membership, Team, User
from tertulia.users.permissions import Actor
from tertulia.workspaces.models import Workspace

log = structlog.get_logger("tertulia.exports")

Rows = Select[*tuple[Any, ...]]  # a query of plain rows, whatever its columns

FILES = ("contacts", "conversations", "messages", "failed_messages")
EXPIRE_AFTER = timedelta(days=7)
RESUME_AFTER = timedelta(minutes=5)
MAX_RUNS = 5
PAGE_SIZE = 1000

CONVERSATION_COLUMNS = [
    "conversation_id",
    "status",
    "channel_id",
    "channel",
    "contact_id",
    "contact",
    "opened_at",
    "closed_at",
    "first_assignee",
    "last_assignee",
    "team",
    "closing_category",
    "closing_summary",
    "closing_source",
    "first_response_seconds",
    "first_response_business_seconds",
    "resolution_seconds",
    "resolution_business_seconds",
    "reopen_count",
    "incoming_messages",
    "outgoing_messages",
    "comments",
]
MESSAGE_COLUMNS = [
    "message_id",
    "conversation_id",
    "contact_id",
    "channel_id",
    "channel",
    "created_at",
    "direction",
    "sender_kind",
    "sender",
    "type",
    "text",
    "attachments",
    "status",
    "status_reason",
    "status_at",
]


def exports_root() -> Path:
    return (get_settings().data_dir / "exports").resolve()


def export_path(relative: str) -> Path:
    root = exports_root()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError("export path escapes the exports directory")
    return path


def claim(database: Database, export_id: int, stale_after: timedelta = RESUME_AFTER) -> datetime | None:
    """Take the export for this runner; its fencing token (the heartbeat), or None."""
    return claim_job(
        database,
        DataExport,
        export_id,
        queued=ExportStatus.QUEUED,
        running=ExportStatus.RUNNING,
        stale_after=stale_after,
        runs=DataExport.runs + 1,
        processed_rows=0,
        started_at=func.coalesce(DataExport.started_at, utcnow()),
    )


# ----- the rows -----------------------------------------------------------------------------


def _zone(session: Session, workspace_id: int) -> ZoneInfo:
    name = session.scalar(select(Workspace.timezone).where(Workspace.id == workspace_id))
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def utc_bounds(first_day: date, last_day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of whole local days first_day..last_day."""
    start = datetime.combine(first_day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _enum(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


def _pages(session: Session, query: Rows, id_column: Any) -> Iterator[Sequence[Any]]:
    """Keyset pages (`id > last ORDER BY id LIMIT n`) of plain rows: nothing accumulates."""
    last_id = 0
    while True:
        rows = session.execute(query.where(id_column > last_id).order_by(id_column).limit(PAGE_SIZE)).all()
        if not rows:
            return
        yield rows
        last_id = rows[-1].id


class _Names:
    """The workspace's small lookups, read once per export."""

    def __init__(self, session: Session, workspace_id: int) -> None:
        def pairs(query: Select[int, str]) -> dict[int, str]:
            return {int(i): str(n) for i, n in session.execute(query)}

        self.channels = pairs(select(Channel.id, Channel.name).where(Channel.workspace_id == workspace_id))
        self.teams = pairs(select(Team.id, Team.name).where(Team.workspace_id == workspace_id))
        self.categories = pairs(
            select(ClosingCategory.id, ClosingCategory.name).where(ClosingCategory.workspace_id == workspace_id)
        )
        self.users = pairs(
            select(User.id, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id)
        )


def _conversations_query(workspace_id: int, start: datetime, end: datetime) -> Rows:
    query: Rows = (
        select(
            Conversation.id,
            Conversation.status,
            Conversation.channel_id,
            Conversation.contact_id,
            Conversation.opened_at,
            Conversation.closed_at,
            Conversation.assignee_id,
            Conversation.team_id,
            Conversation.closing_category_id,
            Conversation.closing_summary,
            Conversation.closing_source,
            ConversationFact.first_assignee_id,
            ConversationFact.first_response_seconds,
            ConversationFact.first_response_business_seconds,
            ConversationFact.resolution_seconds,
            ConversationFact.resolution_business_seconds,
            ConversationFact.reopen_count,
        )
        .outerjoin(ConversationFact, ConversationFact.conversation_id == Conversation.id)
        .where(Conversation.workspace_id == workspace_id, Conversation.opened_at >= start, Conversation.opened_at < end)
    )
    return query


def _tenths(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def conversation_rows(
    session: Session, workspace_id: int, start: datetime, end: datetime, names: _Names
) -> Iterator[list[list[Any]]]:
    """One row per conversation opened in the range (the per-conversation export)."""
    for page in _pages(session, _conversations_query(workspace_id, start, end), Conversation.id):
        ids = [row.id for row in page]
        contacts = {
            int(i): " ".join(p for p in (first, last) if p)
            for i, first, last in session.execute(
                select(Contact.id, Contact.first_name, Contact.last_name).where(
                    Contact.id.in_({row.contact_id for row in page})
                )
            )
        }
        counts: dict[tuple[int, str], int] = {
            (int(cid), _enum(direction)): int(n)
            for cid, direction, n in session.execute(
                select(Message.conversation_id, Message.direction, func.count())
                .where(Message.conversation_id.in_(ids))
                .group_by(Message.conversation_id, Message.direction)
            )
        }
        yield [
            [
                row.id,
                _enum(row.status),
                row.channel_id,
                names.channels.get(row.channel_id or 0, ""),
                row.contact_id,
                contacts.get(row.contact_id, ""),
                _iso(row.opened_at),
                _iso(row.closed_at),
                names.users.get(row.first_assignee_id or 0, ""),
                names.users.get(row.assignee_id or 0, ""),
                names.teams.get(row.team_id or 0, ""),
                names.categories.get(row.closing_category_id or 0, ""),
                row.closing_summary,
                _enum(row.closing_source),
                _tenths(row.first_response_seconds),
                _tenths(row.first_response_business_seconds),
                _tenths(row.resolution_seconds),
                _tenths(row.resolution_business_seconds),
                row.reopen_count,
                counts.get((row.id, Direction.INCOMING.value), 0),
                counts.get((row.id, Direction.OUTGOING.value), 0),
                counts.get((row.id, Direction.COMMENT.value), 0),
            ]
            for row in page
        ]


def _messages_query(workspace_id: int, start: datetime, end: datetime, *, failed_only: bool) -> Rows:
    query: Rows = select(
        Message.id,
        Message.conversation_id,
        Message.contact_id,
        Message.channel_id,
        Message.created_at,
        Message.direction,
        Message.sender_kind,
        Message.sender_user_id,
        Message.type,
        Message.text,
        Message.attachments,
        Message.status,
        Message.status_reason,
        Message.status_at,
    ).where(Message.workspace_id == workspace_id, Message.created_at >= start, Message.created_at < end)
    if failed_only:
        query = query.where(Message.status == DeliveryStatus.FAILED)
    return query


def message_rows(
    session: Session, workspace_id: int, start: datetime, end: datetime, names: _Names, *, failed_only: bool
) -> Iterator[list[list[Any]]]:
    query = _messages_query(workspace_id, start, end, failed_only=failed_only)
    for page in _pages(session, query, Message.id):
        yield [
            [
                row.id,
                row.conversation_id,
                row.contact_id,
                row.channel_id,
                names.channels.get(row.channel_id or 0, ""),
                _iso(row.created_at),
                _enum(row.direction),
                _enum(row.sender_kind),
                names.users.get(row.sender_user_id or 0, ""),
                _enum(row.type),
                row.text,
                len(row.attachments or []),
                _enum(row.status),
                row.status_reason,
                _iso(row.status_at),
            ]
            for row in page
        ]


def _contacts_where(start: datetime, end: datetime) -> Any:
    return and_(Contact.created_at >= start, Contact.created_at < end)


def count_rows(session: Session, export: DataExport, start: datetime, end: datetime) -> int:
    """Rows the files will hold (for the progress bar; rows written since may add a few)."""
    ws = export.workspace_id
    counts = {
        "contacts": select(func.count())
        .select_from(Contact)
        .where(Contact.workspace_id == ws, _contacts_where(start, end)),
        "conversations": select(func.count()).select_from(_conversations_query(ws, start, end).subquery()),
        "messages": select(func.count()).select_from(_messages_query(ws, start, end, failed_only=False).subquery()),
        "failed_messages": select(func.count()).select_from(
            _messages_query(ws, start, end, failed_only=True).subquery()
        ),
    }
    return sum(int(session.scalar(counts[name]) or 0) for name in export.files)


# ----- the run ------------------------------------------------------------------------------


def _write_table(
    handle: Any, columns: Sequence[str], pages: Iterator[list[list[Any]]], progress: Callable[[int], None]
) -> None:
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    text.write("\ufeff")
    writer.writerow(columns)
    for rows in pages:
        writer.writerows([[cell(value) for value in row] for row in rows])
        text.flush()
        progress(len(rows))
    text.flush()
    text.detach()


def _remove_parts(workspace_id: int, export_id: int, keep: Path | None = None) -> None:
    folder = export_path(f"{workspace_id}/placeholder").parent
    if not folder.exists():
        return
    for part in folder.glob(f"export-{export_id}-*.part"):
        if part != keep:
            part.unlink(missing_ok=True)


ProgressHook = Callable[[int], None]


def run_export(
    database: Database,
    export_id: int,
    stale_after: timedelta = RESUME_AFTER,
    *,
    on_rows: ProgressHook | None = None,
) -> None:
    """Run the export if it is this runner's to run. Never raises for a failed export: the failure
    is recorded on its row. `on_rows(rows_so_far)` is called after each page is written."""
    token = claim(database, export_id, stale_after)
    if token is None:
        return
    run = FencedRun(
        database, DataExport, export_id, running=ExportStatus.RUNNING, failed=ExportStatus.FAILED, token=token
    )
    try:
        _run(run, on_rows)
    except LostClaim:
        log.warning("export_taken_over", export_id=export_id)
    except Exception:
        log.exception("export_failed", export_id=export_id)
        run.fail("The export failed unexpectedly.")


def _run(run: FencedRun, on_rows: ProgressHook | None) -> None:
    with run.database.transaction(write=False) as session:
        export = session.get(DataExport, run.job_id)
        assert export is not None  # claimed a moment ago; deleted only with its workspace
        if export.runs > MAX_RUNS:
            run.fail(f"The export was interrupted {export.runs - 1} times; start it again.")
            return
        workspace_id = export.workspace_id
        start, end = utc_bounds(export.first_day, export.last_day, _zone(session, workspace_id))
        total = count_rows(session, export, start, end)
        run.write_alone(total_rows=total, processed_rows=0)
        part = export_path(f"{workspace_id}/export-{export.id}-{secrets.token_hex(6)}.part")
        part.parent.mkdir(parents=True, exist_ok=True)
        _remove_parts(workspace_id, export.id)
        names = _Names(session, workspace_id)
        done = 0

        def progress(rows: int) -> None:
            nonlocal done
            done += rows
            run.write_alone(processed_rows=min(done, total) if total else done)
            if on_rows is not None:
                on_rows(done)

        try:
            with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for name in export.files:
                    with archive.open(f"{name}.csv", "w", force_zip64=True) as handle:
                        _write_file(session, export, name, start, end, names, handle, progress)
            final = f"{workspace_id}/{secrets.token_urlsafe(18)}.zip"
            target = export_path(final)
            part.replace(target)
        except Exception:
            # A refusal or a lost claim: this run's part goes. A dying process (kill, exit) leaves it
            # to the next run, which removes the parts of earlier runs before it starts.
            part.unlink(missing_ok=True)
            raise
        try:
            run.write_alone(
                status=ExportStatus.DONE,
                processed_rows=done,
                total_rows=max(total, done),
                file_path=final,
                size_bytes=target.stat().st_size,
                finished_at=utcnow(),
                expires_at=utcnow() + EXPIRE_AFTER,
            )
        except Exception:
            target.unlink(missing_ok=True)
            raise
        log.info("export_done", export_id=run.job_id, rows=done)


def _write_file(
    session: Session,
    export: DataExport,
    name: str,
    start: datetime,
    end: datetime,
    names: _Names,
    handle: Any,
    progress: ProgressHook,
) -> None:
    ws = export.workspace_id
    if name == "contacts":
        # The contacts export's own columns and rules (the importer reads this file back).
        actor = Actor.system(ws)
        batch = PAGE_SIZE
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        for index, chunk in enumerate(
            export_contacts(session, actor, where=_contacts_where(start, end), bom=True, batch_size=batch)
        ):
            text.write(chunk)
            text.flush()
            if index:  # every chunk after the header is one keyset page of `batch` contacts (the last fewer)
                progress(min(batch, chunk.count("\r\n")))
        text.detach()
    elif name == "conversations":
        _write_table(handle, CONVERSATION_COLUMNS, conversation_rows(session, ws, start, end, names), progress)
    else:
        failed = name == "failed_messages"
        _write_table(
            handle, MESSAGE_COLUMNS, message_rows(session, ws, start, end, names, failed_only=failed), progress
        )


def interrupted_export_ids(
    database: Database, stale_after: timedelta = RESUME_AFTER, *, queued_for: timedelta = RESUME_AFTER
) -> list[int]:
    now = utcnow()
    with database.transaction(write=False) as session:
        return list(
            session.scalars(
                select(DataExport.id)
                .where(
                    or_(
                        (DataExport.status == ExportStatus.QUEUED) & (DataExport.updated_at <= now - queued_for),
                        (DataExport.status == ExportStatus.RUNNING) & (DataExport.updated_at < now - stale_after),
                    )
                )
                .order_by(DataExport.id)
            )
        )


def expire_exports(database: Database, now: datetime | None = None) -> int:
    """Remove the files of exports past their expiry and mark them expired; also parts left by a
    failed export's runs."""
    moment = now or utcnow()
    expired = 0
    with database.transaction() as session:
        due = list(
            session.scalars(
                select(DataExport).where(DataExport.status == ExportStatus.DONE, DataExport.expires_at <= moment)
            )
        )
        for export in due:
            if export.file_path:
                export_path(export.file_path).unlink(missing_ok=True)
            export.status = ExportStatus.EXPIRED
            export.file_path = None
            expired += 1
        for export_id, workspace_id in session.execute(
            select(DataExport.id, DataExport.workspace_id).where(DataExport.status == ExportStatus.FAILED)
        ):
            _remove_parts(workspace_id, export_id)
    if expired:
        log.info("exports_expired", count=expired)
    return expired
