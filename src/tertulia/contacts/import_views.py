"""Import and export of contacts in the web app.

Import: upload a CSV, map its columns (a preview of the first rows and the guessed mapping), choose
create-only or update-existing, watch the progress (htmx polls the job row), then read the summary
and download the rejected rows. Export: all contacts or one segment, streamed as CSV.
"""

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form
from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, Response, StreamingResponse

from tertulia.contacts.exporter import export_contacts
from tertulia.contacts.fields import STANDARD_FIELDS
from tertulia.contacts.import_jobs import (
    MAX_IMPORT_BYTES,
    access_import,
    data_path,
    do_create_import,
    do_start_import,
    guessed_mapping,
    preview_file,
)
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.importer import CUSTOM_PREFIX
from tertulia.contacts.repository import custom_fields
from tertulia.kit.clock import utcnow
from tertulia.kit.db import database_of
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text
from tertulia.kit.types import ID
from tertulia.segments.compiler import compile_filter
from tertulia.segments.service import access_segment, checked_segment_filter, eval_context
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors

router = APIRouter(prefix="/contacts", include_in_schema=False, route_class=CheckedInputRoute)

RECENT_JOBS = 10
TARGET_LABELS: dict[str, str] = {
    "ignore": i18n.lazy("Do not import"),
    **{field.name: field.import_label or field.label for field in STANDARD_FIELDS if field.importable},
}


def _targets(ctx: WebContext) -> list[tuple[str, str]]:
    standard = [(key, ctx.fmt.gettext(label)) for key, label in TARGET_LABELS.items()]
    custom = [(CUSTOM_PREFIX + d.key, d.label) for d in custom_fields(ctx.session, ctx.actor.workspace_id)]
    return standard + custom


def _upload_page(ctx: WebContext, errors: dict[str, str] | None = None) -> Response:
    jobs = list(
        ctx.session.scalars(
            select(ImportJob)
            .where(ImportJob.workspace_id == ctx.actor.workspace_id)
            .order_by(ImportJob.id.desc())
            .limit(RECENT_JOBS)
        )
    )
    context = {"errors": errors or {}, "jobs": jobs, "max_mb": MAX_IMPORT_BYTES // (1024 * 1024)}
    return ctx.render("contacts/import_upload.html", context, status_code=422 if errors else 200, active="contacts")


@router.get("/import")
def import_form(ctx: UserPage) -> Response:
    ctx.actor.require(Permission.IMPORT_CONTACTS)
    return _upload_page(ctx)


@router.post("/import")
def upload(ctx: UserPage) -> Response:
    ctx.actor.require(Permission.IMPORT_CONTACTS)
    # The CSRF check has already parsed the multipart body (the file is spooled to disk).
    form = getattr(ctx.request.state, "form", None)
    file = form.get("file") if form is not None else None
    if not isinstance(file, UploadFile) or not file.filename:
        return _upload_page(ctx, {"file": ctx._("Choose a CSV file.")})
    # Read at most one byte past the limit: a bigger file is refused without holding it all.
    file.file.seek(0)
    data = file.file.read(MAX_IMPORT_BYTES + 1)
    try:
        check_form_text(ctx.request)
        job = do_create_import(ctx.session, ctx.actor, file.filename, data)
    except ValidationFailed as exc:
        ctx.session.rollback()
        return _upload_page(ctx, field_errors(ctx, exc))
    return ctx.redirect(f"/contacts/import/{job.id}")


def _mapping_context(ctx: WebContext, job: ImportJob, chosen: dict[str, str] | None = None) -> dict[str, Any]:
    preview = preview_file(data_path(job.file_path))
    guess = guessed_mapping(ctx.session, ctx.actor, preview.headers)
    columns = []
    for index, header in enumerate(preview.headers):
        target = (chosen or {}).get(header, guess.get(header, "ignore"))
        samples = [row[index] if index < len(row) else "" for row in preview.rows]
        columns.append({"index": index, "header": header, "target": target, "samples": samples})
    return {"job": job, "columns": columns, "targets": _targets(ctx), "rows": preview.rows}


@router.get("/import/{job_id}")
def import_job(ctx: UserPage, job_id: ID) -> Response:
    job = access_import(ctx.session, ctx.actor, job_id)
    if job.status == ImportStatus.UPLOADED:
        context = _mapping_context(ctx, job)
        context.update(errors={}, update_existing=False)
        return ctx.render("contacts/import_mapping.html", context, active="contacts")
    context = {"job": job}
    if ctx.is_htmx and ctx.request.headers.get("HX-Target") == "import-progress":
        return ctx.render("contacts/_import_progress.html", context)
    return ctx.render("contacts/import_progress.html", context, active="contacts")


@router.post("/import/{job_id}/start")
def start_import(ctx: UserPage, job_id: ID, mode: Annotated[str, Form()] = "create") -> Response:
    job = access_import(ctx.session, ctx.actor, job_id)
    headers = preview_file(data_path(job.file_path), rows=0).headers
    form = ctx.form
    mapping = {header: form.get(f"col-{index}", "ignore") for index, header in enumerate(headers)}
    try:
        check_form_text(ctx.request)
        do_start_import(ctx.session, ctx.actor, job, mapping, update_existing=mode == "update")
    except ValidationFailed as exc:
        ctx.session.rollback()
        job = access_import(ctx.session, ctx.actor, job_id)
        errors = field_errors(ctx, exc)
        context = _mapping_context(ctx, job, mapping)
        context.update(errors=errors, update_existing=mode == "update")
        return ctx.render("contacts/import_mapping.html", context, status_code=422, active="contacts")
    return ctx.redirect(f"/contacts/import/{job.id}")


@router.get("/import/{job_id}/rejected.csv")
def rejected_rows(ctx: UserPage, job_id: ID) -> Response:
    job = access_import(ctx.session, ctx.actor, job_id)
    if not job.report_path:
        raise ValidationFailed.field("job", "this import has no rejected rows")
    name = job.filename.rsplit(".", 1)[0] or "contacts"
    return FileResponse(
        data_path(job.report_path),
        media_type="text/csv; charset=utf-8",
        filename=f"{name}-rejected.csv",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/export")
def export(ctx: UserPage, segment: ID | None = None) -> Response:
    """All contacts, or one segment's, as CSV. Rows are read in keyset batches while streaming."""
    ctx.actor.require(Permission.EXPORT_CONTACTS)
    label = "contacts"
    if segment is not None:
        label = f"segment-{access_segment(ctx.session, ctx.actor, segment).id}"
    actor = ctx.actor
    database = database_of(ctx.session)

    def stream() -> Iterator[bytes]:
        # The request's session is closed once this function returns; the stream reads with its own.
        with database.transaction(write=False) as session:
            where = None
            if segment is not None:
                saved = access_segment(session, actor, segment)
                checked = checked_segment_filter(session, actor, saved)
                where = compile_filter(checked, eval_context(session, actor))
            for chunk in export_contacts(session, actor, where=where, bom=True):
                yield chunk.encode("utf-8")

    filename = f"{label}-{utcnow():%Y%m%d-%H%M}.csv"
    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
