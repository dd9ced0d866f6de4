"""Settings > Data export: choose a date range and the files, watch the job's progress (htmx polls
the export's card), download the zip until it expires. The rules live in reports/exports.py."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, Response

from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, DomainError
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.text import UNSAFE_TEXT_MESSAGE, replace_unsafe_characters
from tertulia.kit.types import ID
from tertulia.reports import export_tasks, exports, rebuild
from tertulia.reports.export_models import DataExport
from tertulia.reports.export_runner import FILES
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors, submit
from tertulia.web.sections import Section, open_section, render_section, section_page

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

DATA_EXPORT = Section("data-export", i18n.lazy("Data export"), Permission.EXPORT_DATA)

FILE_LABELS: dict[str, str] = {
    "contacts": i18n.lazy("Contacts (created in the range)"),
    "conversations": i18n.lazy("Conversations (opened in the range, one row each)"),
    "messages": i18n.lazy("Messages"),
    "failed_messages": i18n.lazy("Failed messages"),
}
STATUS_LABELS: dict[str, str] = {
    "queued": i18n.lazy("Waiting"),
    "running": i18n.lazy("Running"),
    "done": i18n.lazy("Ready"),
    "failed": i18n.lazy("Failed"),
    "expired": i18n.lazy("Expired"),
}
# The service's messages, as the form says them.
FIELD_ERRORS: dict[str, str] = {
    "from": i18n.lazy("Choose the first day."),
    "to": i18n.lazy("Choose the last day: not before the first, at most 366 days after it."),
    "files": i18n.lazy("Choose at least one of the files."),
}
BUSY = i18n.lazy("An export of this workspace is already running. Wait for it to finish, then start another.")


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value.strip() else None
    except ValueError:
        return None


@section_page(router, "/data-export", DATA_EXPORT)
def _data_export(
    ctx: WebContext,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int | None = None,
) -> Response:
    recent = exports.recent_exports(ctx.session, ctx.actor)
    values: dict[str, Any] = {"from": "", "to": "", "files": list(FILES), **(typed or {})}
    context = {
        "values": values,
        "errors": errors or {},
        "exports": recent,
        "summaries": {export.id: exports.summary(export) for export in recent},
        "file_labels": {key: ctx.fmt.gettext(label) for key, label in FILE_LABELS.items()},
        "status_labels": {key: ctx.fmt.gettext(label) for key, label in STATUS_LABELS.items()},
        "running": any(export.status.value in ("queued", "running") for export in recent),
        "rebuild": rebuild.state_of(ctx.session, ctx.actor.workspace_id),
        "can_rebuild": ctx.actor.can(Permission.MANAGE_WORKSPACE),
    }
    code = status_code or (422 if errors else 200)
    return render_section(ctx, DATA_EXPORT, "reports/settings/data_export.html", context, status_code=code)


class ExportForm(BaseModel):
    from_: str = Field("", alias="from")
    to: str = ""
    files: list[str] = []


def _again(ctx: WebContext, form: ExportForm, exc: DomainError) -> Response:
    typed = {
        "from": replace_unsafe_characters(form.from_),
        "to": replace_unsafe_characters(form.to),
        "files": [replace_unsafe_characters(name) for name in form.files],
    }
    if isinstance(exc, Conflict):
        return _data_export(ctx, typed, {"__all__": ctx.fmt.gettext(BUSY)}, status_code=409)
    errors = field_errors(ctx, exc)
    details = exc.details if isinstance(exc.details, dict) else {}
    for key in errors:
        # The service's wording is for the API; the form says it its own way (NUL refusals as they are).
        if key in FIELD_ERRORS and details.get(key) != UNSAFE_TEXT_MESSAGE:
            errors[key] = ctx.fmt.gettext(FIELD_ERRORS[key])
    return _data_export(ctx, typed, errors)


@router.post("/data-export")
def start_export(ctx: UserPage, form: Annotated[ExportForm, Form()]) -> Response:
    open_section(ctx, DATA_EXPORT)
    return submit(
        ctx,
        lambda: exports.do_create_export(
            ctx.session, ctx.actor, _date(form.from_), _date(form.to), form.files or ["-"]
        ),
        again=lambda exc: _again(ctx, form, exc),
        redirect="/settings/data-export",
        flash="export_started",
    )


def _card(ctx: WebContext, export: DataExport) -> Response:
    return ctx.render(
        "reports/settings/_export_row.html",
        {
            # The polled row of a finished export also removes the page's "an export is running" hint
            # (one export runs at a time per workspace, so none is running now).
            "polled": True,
            "export": export,
            "summary": exports.summary(export),
            "file_labels": {key: ctx.fmt.gettext(label) for key, label in FILE_LABELS.items()},
            "status_labels": {key: ctx.fmt.gettext(label) for key, label in STATUS_LABELS.items()},
        },
    )


@router.get("/data-export/{export_id}")
def export_row(ctx: UserPage, export_id: ID) -> Response:
    """One export's row (htmx polls it while the export runs)."""
    open_section(ctx, DATA_EXPORT)
    return _card(ctx, exports.access_export(ctx.session, ctx.actor, export_id))


@router.get("/data-export/{export_id}/download")
def download(ctx: UserPage, export_id: ID) -> Response:
    open_section(ctx, DATA_EXPORT)
    path, filename = exports.download_file(ctx.session, ctx.actor, export_id)
    return FileResponse(path, media_type="application/zip", filename=filename, headers={"Cache-Control": "no-store"})


@router.post("/data-export/reports/rebuild")
def start_rebuild(ctx: UserPage) -> Response:
    """Rebuild the report data of every day the event log holds (docs/reports.md): the deletes and the
    mark in this request's transaction, the batches on the queue once it commits."""
    open_section(ctx, DATA_EXPORT)
    ctx.actor.require(Permission.MANAGE_WORKSPACE)
    workspace_id = ctx.actor.workspace_id
    retention_days = ctx.request.app.state.settings.event_retention_days
    rebuild.start_in(ctx.session, workspace_id, retention_days=retention_days)
    on_commit(ctx.session, lambda: export_tasks.enqueue_rebuild(workspace_id))
    return ctx.redirect("/settings/data-export")


@router.get("/data-export/reports/rebuild")
def rebuild_card(ctx: UserPage) -> Response:
    """The rebuild's card (htmx polls it while a rebuild runs)."""
    open_section(ctx, DATA_EXPORT)
    return ctx.render(
        "reports/settings/_rebuild_card.html",
        {
            "rebuild": rebuild.state_of(ctx.session, ctx.actor.workspace_id),
            "can_rebuild": ctx.actor.can(Permission.MANAGE_WORKSPACE),
        },
    )
