"""Inbox pages in the web app: Settings > Snippets, Settings > Closing categories, Settings > Away
message, and the workspace's Files library (beside Messages).

The rules live in conversations/service.py (snippets, closing categories) and conversations/files.py
(uploads); these views only turn their errors into messages beside the field, in the person's
language, keeping what was typed.
"""

import re
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form
from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.responses import Response

from tertulia.conversations import away, files, service, variables
from tertulia.conversations import repository as repo
from tertulia.conversations.models import Snippet, StoredFile
from tertulia.kit.errors import Conflict, DomainError, NotFound, ValidationFailed
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import first_message, keep_one, submit
from tertulia.web.sections import Section, open_section, render_section, section_page
from tertulia.workspaces.service import current_hours

router = APIRouter(include_in_schema=False, route_class=CheckedInputRoute)

SNIPPETS = Section("snippets", i18n.lazy("Snippets"), Permission.MANAGE_SNIPPETS)
CLOSING_CATEGORIES = Section("closing-categories", i18n.lazy("Closing categories"), Permission.MANAGE_WORKSPACE)
AWAY_MESSAGE = Section("away-message", i18n.lazy("Away message"), Permission.MANAGE_WORKSPACE)

FILES_PAGE_SIZE = 50
PREVIEW_CHARS = 120

# Service messages shown beside a field; listed so they are extracted and translated.
SERVICE_MESSAGES = (
    i18n.lazy("use 1-64 lowercase letters, digits, - or _"),
    i18n.lazy("a snippet needs text or a file"),
    i18n.lazy("must be at most 10000 characters"),
    i18n.lazy("is required (at most 100 characters)"),
    i18n.lazy("This file has been sent or is in a snippet; it is kept."),
    i18n.lazy("write the message to turn it on"),
    i18n.lazy("must be at most 2000 characters"),
)


def _pattern_messages() -> tuple[tuple[re.Pattern[str], str, str], ...]:
    """English messages with a value inside: (pattern, translatable text, name of the value)."""
    return (
        (re.compile(r"^unknown variable (?P<v>.+)$", re.DOTALL), i18n.lazy("Unknown variable %(v)s."), "v"),
        (
            re.compile(r"^the fallback of (?P<v>.+) must be in double quotes$", re.DOTALL),
            i18n.lazy('The fallback of %(v)s must be in double quotes, like {{contact.first_name | "there"}}.'),
            "v",
        ),
        (re.compile(r"^unclosed \{\{ in text$"), i18n.lazy("A {{ is not closed with }}."), ""),
        (
            re.compile(r"^files of type (?P<v>.+) are not accepted$"),
            i18n.lazy("Files of type %(v)s are not accepted."),
            "v",
        ),
        (re.compile(r"^must be at most (?P<v>\d+) MB$"), i18n.lazy("The file must be at most %(v)s MB."), "v"),
        (re.compile(r"^is empty$"), i18n.lazy("The file is empty."), ""),
    )


PATTERN_MESSAGES = _pattern_messages()


def _message(ctx: WebContext, raw: str) -> str:
    for pattern, text, name in PATTERN_MESSAGES:
        match = pattern.match(raw)
        if match is not None:
            translated = ctx.fmt.gettext(text)
            return translated % {name: match.group(name)} if name else translated
    return ctx.fmt.gettext(raw)


def _errors(ctx: WebContext, exc: DomainError, conflict: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Per-field messages; a conflict (a name already taken) uses the caller's wording."""
    if isinstance(exc, Conflict):
        return conflict()
    details = exc.details if isinstance(exc.details, dict) else {}
    errors = {str(key): _message(ctx, str(value)) for key, value in details.items() if isinstance(value, str)}
    return errors or {"__all__": _message(ctx, exc.message)}


def _uploaded(ctx: WebContext) -> UploadFile | None:
    """The file chosen in the form's `file` input, if any (the CSRF check has parsed the body)."""
    form = getattr(ctx.request.state, "form", None)
    upload = form.get("file") if form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    return upload


def _store(ctx: WebContext, upload: UploadFile) -> StoredFile:
    upload.file.seek(0)
    # Read at most one byte past the limit: a bigger file is refused without holding it all.
    data = upload.file.read(files.max_bytes() + 1)
    return files.do_store_file(
        ctx.session, ctx.actor, name=upload.filename, content_type=upload.content_type, data=data
    )


def human_size(ctx: WebContext, size: int) -> str:
    if size < 1024:
        return f"{ctx.fmt.number(size)} B"
    if size < 1024 * 1024:
        return f"{ctx.fmt.number(round(size / 1024, 1))} KB"
    return f"{ctx.fmt.number(round(size / (1024 * 1024), 1))} MB"


# ----- snippets ----------------------------------------------------------------------------------


def _variable_names(ctx: WebContext) -> list[str]:
    names = [f"contact.{name}" for name in sorted(variables.CONTACT_FIELDS)]
    names += [f"contact.custom.{key}" for key in service.custom_keys(ctx.session, ctx.actor.workspace_id)]
    names += [f"user.{name}" for name in sorted(variables.USER_FIELDS)]
    names += [f"workspace.{name}" for name in sorted(variables.WORKSPACE_FIELDS)]
    return ["{{" + name + "}}" for name in names]


def _file_rows(ctx: WebContext, file_ids: list[int]) -> dict[int, StoredFile]:
    if not file_ids:
        return {}
    rows = ctx.session.scalars(
        select(StoredFile).where(StoredFile.workspace_id == ctx.actor.workspace_id, StoredFile.id.in_(file_ids))
    )
    return {f.id: f for f in rows}


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


@section_page(router, "/settings/snippets", SNIPPETS)
def _snippets(
    ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    snippets = repo.snippets(ctx.session, ctx.actor.workspace_id)
    attached = _file_rows(ctx, [s.file_id for s in snippets if s.file_id is not None])
    rows = [
        {"snippet": s, "preview": _preview(s.text), "file": attached.get(s.file_id) if s.file_id else None}
        for s in snippets
    ]
    context = {
        "rows": rows,
        "typed": typed or {"shortcut": "", "text": ""},
        "errors": errors or {},
        "variables": _variable_names(ctx),
        "max_mb": files.max_bytes() // (1024 * 1024),
    }
    return render_section(
        ctx, SNIPPETS, "conversations/settings/snippets.html", context, status_code=422 if errors else 200
    )


def _snippet_conflict(ctx: WebContext) -> Callable[[], dict[str, str]]:
    return lambda: {"shortcut": ctx._("Another snippet already uses this shortcut.")}


def _precheck(ctx: WebContext, shortcut: str, text: str) -> None:
    """The snippet's own checks before an attached file's bytes are stored (the file stands in for
    empty text), so a refused snippet stores nothing."""
    service.check_snippet(ctx.session, ctx.actor, shortcut, text if text.strip() else "-", None)


def _save_snippet(
    ctx: WebContext,
    shortcut: str,
    text: str,
    save: Callable[[StoredFile | None], object],
    again: Callable[[dict[str, str]], Response],
) -> Response:
    """Stores the chosen file (if any) and calls `save` with it; when the snippet is refused, the
    stored file is discarded and `again(errors)` shows the form, asking for the file again."""
    upload = _uploaded(ctx)
    stored: list[StoredFile] = []

    def action() -> None:
        if upload is not None:
            _precheck(ctx, shortcut, text)
            stored.append(_store(ctx, upload))
        save(stored[0] if stored else None)

    def refused(exc: DomainError) -> Response:
        for stored_file in stored:
            files.discard(stored_file)
        errors = _errors(ctx, exc, _snippet_conflict(ctx))
        if upload is not None and "file" not in errors:
            errors["file"] = ctx._("The file was not saved: choose it again.")
        return again(errors)

    return submit(ctx, action, again=refused, redirect="/settings/snippets", flash="snippet_saved")


@router.post("/settings/snippets")
def create_snippet(ctx: UserPage, shortcut: Annotated[str, Form()] = "", text: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, SNIPPETS)
    return _save_snippet(
        ctx,
        shortcut,
        text,
        lambda stored: service.do_create_snippet(ctx.session, ctx.actor, shortcut, text, stored.id if stored else None),
        lambda errors: _snippets(ctx, typed={"shortcut": shortcut, "text": text}, errors=errors),
    )


def _edit_page(
    ctx: WebContext,
    snippet: Snippet,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    attached = _file_rows(ctx, [snippet.file_id] if snippet.file_id else [])
    context = {
        "snippet": snippet,
        "file": attached.get(snippet.file_id) if snippet.file_id else None,
        "typed": typed or {"shortcut": snippet.shortcut, "text": snippet.text, "remove_file": False},
        "errors": errors or {},
        "variables": _variable_names(ctx),
        "max_mb": files.max_bytes() // (1024 * 1024),
    }
    return render_section(
        ctx, SNIPPETS, "conversations/settings/snippet_edit.html", context, status_code=422 if errors else 200
    )


@router.get("/settings/snippets/{snippet_id}")
def edit_snippet(ctx: UserPage, snippet_id: ID) -> Response:
    open_section(ctx, SNIPPETS)
    return _edit_page(ctx, service.access_snippet(ctx.session, ctx.actor, snippet_id))


@router.post("/settings/snippets/{snippet_id}")
def update_snippet(
    ctx: UserPage,
    snippet_id: ID,
    shortcut: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    remove_file: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, SNIPPETS)
    snippet = service.access_snippet(ctx.session, ctx.actor, snippet_id)

    def save(stored: StoredFile | None) -> None:
        service.do_update_snippet(
            ctx.session,
            ctx.actor,
            snippet,
            shortcut=shortcut,
            text=text,
            file_id=stored.id if stored else None,
            clear_file=bool(remove_file) and stored is None,
        )

    def again(errors: dict[str, str]) -> Response:
        fresh = service.access_snippet(ctx.session, ctx.actor, snippet_id)
        typed = {"shortcut": shortcut, "text": text, "remove_file": bool(remove_file)}
        return _edit_page(ctx, fresh, typed=typed, errors=errors)

    return _save_snippet(ctx, shortcut, text, save, again)


@router.post("/settings/snippets/{snippet_id}/delete")
def delete_snippet(ctx: UserPage, snippet_id: ID) -> Response:
    open_section(ctx, SNIPPETS)
    service.do_delete_snippet(ctx.session, ctx.actor, service.access_snippet(ctx.session, ctx.actor, snippet_id))
    return ctx.redirect("/settings/snippets", flash="snippet_deleted")


# ----- closing categories ------------------------------------------------------------------------


@section_page(router, "/settings/closing-categories", CLOSING_CATEGORIES)
def _categories(
    ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    context = {
        "categories": repo.closing_categories(ctx.session, ctx.actor.workspace_id),
        "typed": typed or {},
        "errors": errors or {},
    }
    status_code = 422 if errors else 200
    return render_section(
        ctx, CLOSING_CATEGORIES, "conversations/settings/closing_categories.html", context, status_code=status_code
    )


def _category_error(ctx: WebContext, exc: DomainError) -> str:
    return first_message(_errors(ctx, exc, lambda: {"name": ctx._("Another closing category already has this name.")}))


@router.post("/settings/closing-categories")
def create_category(ctx: UserPage, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, CLOSING_CATEGORIES)
    return submit(
        ctx,
        lambda: service.do_create_closing_category(ctx.session, ctx.actor, name),
        again=keep_one(partial(_categories, ctx), "new", name, partial(_category_error, ctx)),
        redirect="/settings/closing-categories",
        flash="category_saved",
    )


@router.post("/settings/closing-categories/{category_id}/rename")
def rename_category(ctx: UserPage, category_id: ID, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, CLOSING_CATEGORIES)
    category = service.access_closing_category(ctx.session, ctx.actor, category_id)
    return submit(
        ctx,
        lambda: service.do_update_closing_category(ctx.session, ctx.actor, category, name=name, position=None),
        again=keep_one(partial(_categories, ctx), f"category-{category_id}", name, partial(_category_error, ctx)),
        redirect="/settings/closing-categories",
        flash="category_saved",
    )


@router.post("/settings/closing-categories/{category_id}/delete")
def delete_category(ctx: UserPage, category_id: ID) -> Response:
    open_section(ctx, CLOSING_CATEGORIES)
    category = service.access_closing_category(ctx.session, ctx.actor, category_id)
    service.do_delete_closing_category(ctx.session, ctx.actor, category)
    return ctx.redirect("/settings/closing-categories", flash="category_deleted")


# ----- files library -----------------------------------------------------------------------------


def _files(ctx: WebContext, *, before: int | None = None, errors: dict[str, str] | None = None) -> Response:
    rows = files.library_page(ctx.session, ctx.actor.workspace_id, before_id=before, limit=FILES_PAGE_SIZE)
    more = len(rows) > FILES_PAGE_SIZE
    rows = rows[:FILES_PAGE_SIZE]
    names = files.uploader_names(ctx.session, rows)
    items = [
        {
            "file": f,
            "size": human_size(ctx, f.size),
            "uploader": names.get(f.uploaded_by_id) if f.uploaded_by_id is not None else None,
            # Offered to whoever may delete it; a file in use is refused with a message (409).
            "deletable": f.uploaded_by_id == ctx.actor.user_id or ctx.actor.can(Permission.MANAGE_WORKSPACE),
        }
        for f in rows
    ]
    context = {
        "library": items,
        "older": rows[-1].id if more and rows else None,
        "first_page": before is None,
        "errors": errors or {},
        "max_mb": files.max_bytes() // (1024 * 1024),
    }
    return ctx.render("conversations/files.html", context, status_code=422 if errors else 200, active="messages")


@router.get("/messages/files")
def files_page(ctx: UserPage, before: ID | None = None) -> Response:
    ctx.actor.require(Permission.VIEW_CONTACTS)
    return _files(ctx, before=before)


@router.post("/messages/files/{file_id}/delete")
def delete_library_file(ctx: UserPage, file_id: ID) -> Response:
    ctx.actor.require(Permission.VIEW_CONTACTS)
    stored = ctx.session.scalar(
        select(StoredFile).where(
            StoredFile.workspace_id == ctx.actor.workspace_id,
            StoredFile.id == file_id,
            StoredFile.conversation_id.is_(None),
        )
    )
    if stored is None:
        raise NotFound(f"No file {file_id}.")
    return submit(
        ctx,
        lambda: files.do_delete_file(ctx.session, ctx.actor, stored),
        again=lambda exc: _files(ctx, errors={"__all__": _message(ctx, exc.message)}),
        redirect="/messages/files",
        flash="file_deleted",
    )


@router.post("/messages/files")
def upload_file(ctx: UserPage) -> Response:
    ctx.actor.require(Permission.VIEW_CONTACTS)
    upload = _uploaded(ctx)
    if upload is None:
        return _files(ctx, errors={"file": ctx._("Choose a file.")})
    return submit(
        ctx,
        lambda: _store(ctx, upload),
        again=lambda exc: _files(ctx, errors=_errors(ctx, exc, lambda: {})),
        redirect="/messages/files",
        flash="file_uploaded",
        catch=(ValidationFailed,),
    )


# ----- away message -------------------------------------------------------------------------


@section_page(router, "/settings/away-message", AWAY_MESSAGE)
def _away_message(
    ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    row = away.away_settings(ctx.session, ctx.actor.workspace_id)
    hours = current_hours(ctx.session, ctx.actor.workspace_id)
    context = {
        "typed": typed or {"enabled": "1" if row.enabled else "", "text": row.text},
        "errors": errors or {},
        "variables": _variable_names(ctx),
        "hours_on": hours is not None and hours.enabled,
    }
    return render_section(
        ctx, AWAY_MESSAGE, "conversations/settings/away_message.html", context, status_code=422 if errors else 200
    )


@router.post("/settings/away-message")
def save_away_message(
    ctx: UserPage, enabled: Annotated[str, Form()] = "", text: Annotated[str, Form()] = ""
) -> Response:
    open_section(ctx, AWAY_MESSAGE)
    typed = {"enabled": enabled, "text": text}
    return submit(
        ctx,
        lambda: away.do_set_away_message(ctx.session, ctx.actor, enabled=bool(enabled), text=text),
        again=lambda exc: _away_message(ctx, typed=typed, errors=_errors(ctx, exc, dict)),
        redirect="/settings/away-message",
        flash="settings_saved",
    )
