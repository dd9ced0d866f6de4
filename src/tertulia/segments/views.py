"""Segments in the web app: the sidebar of the contacts module (segments with their counts), a
segment's contacts, the filter panel with its live count, and saving, renaming and deleting.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.datastructures import FormData
from starlette.responses import Response

from tertulia.contacts import repository as contacts_repo
from tertulia.contacts.fields import FILTER_LABELS, KIND_BY_TYPE
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import Conflict, TooSlow, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text, read_only
from tertulia.kit.text import replace_unsafe_characters
from tertulia.kit.types import ID
from tertulia.segments import repository as repo
from tertulia.segments.models import Segment
from tertulia.segments.panel import (
    STANDARD_KINDS,
    Catalogue,
    FieldChoice,
    RawFilter,
    apply_action,
    error_slots,
    from_filter,
    from_form,
    operators_for,
    to_filter,
    widget,
)
from tertulia.segments.service import (
    COUNT_MAX_AGE,
    access_segment,
    checked_segment_filter,
    contacts_page,
    count_matching,
    counted_segments,
    do_create_segment,
    do_delete_segment,
    do_update_segment,
    filter_clause,
)
from tertulia.users.permissions import Permission
from tertulia.users.service import member_names
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext

router = APIRouter(prefix="/contacts", include_in_schema=False, route_class=CheckedInputRoute)

CATEGORY_LABELS: dict[str, str] = {
    "tag": i18n.lazy("Tags"),
    "last_incoming_message": i18n.lazy("Last message from the contact"),
    "last_outgoing_message": i18n.lazy("Last message to the contact"),
    "segment": i18n.lazy("Segment"),
}
OPERATOR_LABELS: dict[str, str] = {
    "is": i18n.lazy("is"),
    "is_not": i18n.lazy("is not"),
    "contains": i18n.lazy("contains"),
    "not_contains": i18n.lazy("does not contain"),
    "starts_with": i18n.lazy("starts with"),
    "ends_with": i18n.lazy("ends with"),
    "exists": i18n.lazy("has a value"),
    "not_exists": i18n.lazy("is empty"),
    "eq": i18n.lazy("equals"),
    "neq": i18n.lazy("does not equal"),
    "gt": i18n.lazy("greater than"),
    "gte": i18n.lazy("at least"),
    "lt": i18n.lazy("less than"),
    "lte": i18n.lazy("at most"),
    "between": i18n.lazy("between"),
    "is_any_of": i18n.lazy("is any of"),
    "is_none_of": i18n.lazy("is none of"),
    "is_true": i18n.lazy("is checked"),
    "is_false": i18n.lazy("is not checked"),
    "before": i18n.lazy("before"),
    "after": i18n.lazy("after"),
    "on": i18n.lazy("on"),
    "less_than_ago": i18n.lazy("less than ... ago"),
    "more_than_ago": i18n.lazy("more than ... ago"),
    "has_any_of": i18n.lazy("has any of"),
    "has_all_of": i18n.lazy("has all of"),
    "has_none_of": i18n.lazy("has none of"),
    "in": i18n.lazy("is in"),
    "not_in": i18n.lazy("is not in"),
}
# Wording for "exists" on tags and messages reads better with its own phrase.
SPECIAL_OPERATOR_LABELS: dict[tuple[str, str], str] = {
    ("tag", "exists"): i18n.lazy("has any tag"),
    ("tag", "not_exists"): i18n.lazy("has no tag"),
    ("last_incoming_message", "exists"): i18n.lazy("has happened"),
    ("last_incoming_message", "not_exists"): i18n.lazy("never happened"),
    ("last_outgoing_message", "exists"): i18n.lazy("has happened"),
    ("last_outgoing_message", "not_exists"): i18n.lazy("never happened"),
}
UNIT_LABELS: dict[str, str] = {
    "minutes": i18n.lazy("minutes"),
    "hours": i18n.lazy("hours"),
    "days": i18n.lazy("days"),
    "weeks": i18n.lazy("weeks"),
    "months": i18n.lazy("months"),
}
# Messages of the filter checker shown beside a condition (others stay in English).
CHECKER_MESSAGES = (
    i18n.lazy("a value is required"),
    i18n.lazy("must be a number"),
    i18n.lazy("must be a non-empty string"),
    i18n.lazy("must be a non-empty list of strings"),
    i18n.lazy("must be a date (YYYY-MM-DD)"),
    i18n.lazy("must be a segment id"),
    i18n.lazy("must be a user id"),
    i18n.lazy("the first date must not be after the second"),
    i18n.lazy("a group needs at least one condition"),
    i18n.lazy("is required"),
)


def catalogue(ctx: WebContext, exclude_segment: int | None = None) -> Catalogue:
    workspace_id = ctx.actor.workspace_id
    fields = {
        name: FieldChoice(name, ctx.fmt.gettext(FILTER_LABELS[name]), kind) for name, kind in STANDARD_KINDS.items()
    }
    for definition in contacts_repo.custom_fields(ctx.session, workspace_id):
        fields[definition.key] = FieldChoice(
            definition.key, definition.label, KIND_BY_TYPE[definition.type], tuple(definition.options or ())
        )
    tags = contacts_repo.tag_suggestions(ctx.session, workspace_id)
    segments = [(s.id, s.name) for s in repo.segments(ctx.session, workspace_id) if s.id != exclude_segment]
    return Catalogue(fields=fields, tags=tags, segments=segments, people=member_names(ctx.session, workspace_id))


def operator_label(ctx: WebContext, category: str, operator: str) -> str:
    special = SPECIAL_OPERATOR_LABELS.get((category, operator))
    return ctx.fmt.gettext(special or OPERATOR_LABELS.get(operator, operator))


def matching_count(ctx: WebContext, raw_filter: dict[str, Any]) -> tuple[int | None, dict[str, str]]:
    """How many contacts match a filter now, for a panel's live count (also the workflows'
    conditions dialog); None with the errors by panel slot when it cannot be counted."""
    try:
        return count_matching(ctx.session, filter_clause(ctx.session, ctx.actor, raw_filter)), {}
    except TooSlow as exc:
        return None, {"filter": ctx.fmt.gettext(exc.message)}
    except ValidationFailed as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        slots = error_slots(details) or {"filter": exc.message}
        return None, {slot: ctx.fmt.gettext(message) for slot, message in slots.items()}


def _panel(
    ctx: WebContext,
    raw: RawFilter,
    cat: Catalogue,
    *,
    segment: Segment | None,
    name: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    count, filter_errors = matching_count(ctx, to_filter(raw, cat))
    all_errors = dict(filter_errors)
    all_errors.update(errors or {})
    context = {
        "raw": raw,
        "cat": cat,
        "segment": segment,
        "name": name,
        "count": count,
        "errors": all_errors,
        "can_manage": ctx.can("manage_segments"),
        "operators_for": lambda category: operators_for(category, cat),
        "widget": lambda category, operator: widget(category, operator, cat),
        "operator_label": lambda category, operator: operator_label(ctx, category, operator),
        "category_labels": {k: ctx.fmt.gettext(v) for k, v in CATEGORY_LABELS.items()},
        "units": {k: ctx.fmt.gettext(v) for k, v in UNIT_LABELS.items()},
    }
    return ctx.render("contacts/_filter_panel.html", context, status_code=status_code)


def _segment_or_none(ctx: WebContext, segment_id: int | None) -> Segment | None:
    return None if segment_id is None else access_segment(ctx.session, ctx.actor, segment_id)


# ----- sidebar and a segment's contacts -----------------------------------------------------


def sidebar_context(ctx: WebContext, active: str) -> dict[str, Any]:
    """The segment list. Counts younger than COUNT_MAX_AGE are shown at once; older ones are
    recounted by one request per segment after the page is shown, so a page never waits for them."""
    ctx.actor.require(Permission.VIEW_CONTACTS)
    now = utcnow()
    items = []
    for segment in repo.segments(ctx.session, ctx.actor.workspace_id):
        computed = segment.count_computed_at
        fresh = segment.contact_count is not None and computed is not None and now - computed < COUNT_MAX_AGE
        groups = segment.filter.get("groups", []) if isinstance(segment.filter, dict) else []
        items.append(
            {
                "segment": segment,
                "count": segment.contact_count if fresh else None,
                "count_computed_at": computed if fresh else None,
                "fresh": fresh,
                "conditions": sum(len(g.get("conditions", [])) for g in groups if isinstance(g, dict)),
            }
        )
    return {"segments": items, "active": active, "can_manage": ctx.can("manage_segments")}


@router.get("/segments/sidebar")
def sidebar(ctx: UserPage, active: str = "all") -> Response:
    return ctx.render("contacts/_segments_sidebar.html", sidebar_context(ctx, active[:20]))


@router.get("/segments/{segment_id}/count")
def segment_count(ctx: UserPage, segment_id: ID) -> Response:
    segment = access_segment(ctx.session, ctx.actor, segment_id)
    counted = counted_segments(ctx.session, ctx.actor, [segment])[0]
    context = {"count": counted.count, "computed_at": counted.count_computed_at, "filter_error": counted.filter_error}
    return ctx.render("contacts/_segment_count.html", context)


@router.get("/segments/{segment_id}")
def segment_page(ctx: UserPage, segment_id: ID, after: ID | None = None) -> Response:
    segment = access_segment(ctx.session, ctx.actor, segment_id)
    filter_error = None
    try:
        checked = checked_segment_filter(ctx.session, ctx.actor, segment)
        rows = contacts_page(ctx.session, ctx.actor, checked, after_id=after, limit=contacts_repo.CONTACTS_PAGE_SIZE)
    except ValidationFailed as exc:
        filter_error, rows = exc.message, []
    has_more = len(rows) > contacts_repo.CONTACTS_PAGE_SIZE
    rows = rows[: contacts_repo.CONTACTS_PAGE_SIZE]
    base = f"/contacts/segments/{segment.id}"
    context: dict[str, Any] = {
        "contacts": rows,
        "tags": contacts_repo.tag_names_by_contact(ctx.session, [c.id for c in rows]),
        "people": member_names(ctx.session, ctx.actor.workspace_id),
        "next_after": rows[-1].id if has_more and rows else None,
        "more_url": f"{base}?after={rows[-1].id}" if has_more and rows else "",
        "q": "",
        "view": f"segment-{segment.id}",
        "first_page": after is None,
        "list_url": base,
        "segment": segment,
        "filter_error": filter_error,
        "rename_value": segment.name,
        "rename_error": None,
    }
    if ctx.is_htmx and ctx.request.headers.get("HX-Target") in ("contact-rows", "load-more"):
        return ctx.render("contacts/_rows.html", context)
    context["all_tags"] = contacts_repo.tag_suggestions(ctx.session, ctx.actor.workspace_id)
    context.update(sidebar_context(ctx, str(segment.id)))
    return ctx.render("contacts/segment.html", context, active="contacts")


# ----- the filter panel ---------------------------------------------------------------------


@router.get("/filter")
def filter_panel(ctx: UserPage, segment: ID | None = None, new: bool = False) -> Response:
    ctx.actor.require(Permission.VIEW_CONTACTS)
    saved = _segment_or_none(ctx, segment)
    cat = catalogue(ctx, saved.id if saved else None)
    raw = from_filter(saved.filter if saved else None, cat)
    return _panel(ctx, raw, cat, segment=None if new else saved)


@router.post("/filter/panel")
@read_only
def filter_panel_update(
    ctx: UserPage,
    segment: Annotated[ID | None, Form()] = None,
    action: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    ctx.actor.require(Permission.VIEW_CONTACTS)
    saved = _segment_or_none(ctx, segment)
    cat = catalogue(ctx, saved.id if saved else None)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _text_refused(ctx, exc, cat, segment=saved, name=replace_unsafe_characters(name))
    form = ctx.request.state.form
    raw = apply_action(from_form(form, cat), action, cat)
    return _panel(ctx, raw, cat, segment=saved, name=name)


@router.post("/filter/count")
@read_only
def filter_count(ctx: UserPage, segment: Annotated[ID | None, Form()] = None) -> Response:
    """The live count while the person types; errors go beside their conditions (out of band)."""
    ctx.actor.require(Permission.VIEW_CONTACTS)
    saved = _segment_or_none(ctx, segment)
    cat = catalogue(ctx, saved.id if saved else None)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        context: dict[str, Any] = {
            "count": None,
            "errors": _slots(ctx, exc),
            "raw": _typed_filter(ctx, cat),
            "oob": True,
        }
        return ctx.render("contacts/_filter_count.html", context, status_code=422)
    raw = from_form(ctx.request.state.form, cat)
    count, errors = matching_count(ctx, to_filter(raw, cat))
    context = {"count": count, "errors": errors, "raw": raw, "oob": True}
    return ctx.render("contacts/_filter_count.html", context, status_code=422 if errors else 200)


def _save_failed(
    ctx: WebContext, exc: ValidationFailed | Conflict, raw: RawFilter, cat: Catalogue, **kw: Any
) -> Response:
    ctx.session.rollback()
    if isinstance(exc, Conflict):
        errors = {"name": ctx._("Another segment already has this name.")}
    else:
        details = exc.details if isinstance(exc.details, dict) else {}
        errors = {slot: ctx.fmt.gettext(message) for slot, message in error_slots(details).items()}
        errors = errors or {"filter": ctx.fmt.gettext(exc.message)}
    return _panel(ctx, raw, cat, errors=errors, status_code=422, **kw)


def _typed_filter(ctx: WebContext, cat: Catalogue) -> RawFilter:
    """The panel as submitted, for showing it again, with NUL and unpaired surrogates made visible
    (U+FFFD): kit.text's rule refused them and a page cannot carry them."""
    form = ctx.request.state.form
    return from_form(FormData([(key, replace_unsafe_characters(value)) for key, value in form.multi_items()]), cat)


def _slots(ctx: WebContext, exc: ValidationFailed) -> dict[str, str]:
    details = exc.details if isinstance(exc.details, dict) else {}
    return {slot: ctx.fmt.gettext(message) for slot, message in error_slots(details).items()}


def _text_refused(ctx: WebContext, exc: ValidationFailed, cat: Catalogue, **kw: Any) -> Response:
    """The panel again with kit.text's refusal beside the condition (or the name) that holds it;
    hidden fields' refusals go to the top of the panel."""
    return _panel(ctx, _typed_filter(ctx, cat), cat, errors=_slots(ctx, exc), status_code=422, **kw)


@router.post("/segments")
def create_segment(
    ctx: UserPage,
    name: Annotated[str, Form()] = "",
    segment: Annotated[ID | None, Form()] = None,
) -> Response:
    """ "Save as new segment" from the panel, whether it was opened on a segment or on all contacts."""
    ctx.actor.require(Permission.MANAGE_SEGMENTS)
    source = _segment_or_none(ctx, segment)
    cat = catalogue(ctx, source.id if source else None)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _text_refused(ctx, exc, cat, segment=source, name=replace_unsafe_characters(name))
    raw = from_form(ctx.request.state.form, cat)
    try:
        created = do_create_segment(ctx.session, ctx.actor, name, to_filter(raw, cat))
    except (ValidationFailed, Conflict) as exc:
        return _save_failed(ctx, exc, raw, cat, segment=source, name=name)
    return ctx.redirect(f"/contacts/segments/{created.id}", flash="segment_saved")


@router.post("/segments/{segment_id}/filter")
def update_segment_filter(ctx: UserPage, segment_id: ID) -> Response:
    saved = access_segment(ctx.session, ctx.actor, segment_id, Permission.MANAGE_SEGMENTS)
    cat = catalogue(ctx, saved.id)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _text_refused(ctx, exc, cat, segment=saved)
    raw = from_form(ctx.request.state.form, cat)
    try:
        do_update_segment(ctx.session, ctx.actor, saved, raw_filter=to_filter(raw, cat))
    except (ValidationFailed, Conflict) as exc:
        saved = access_segment(ctx.session, ctx.actor, segment_id)
        return _save_failed(ctx, exc, raw, cat, segment=saved)
    return ctx.redirect(f"/contacts/segments/{saved.id}", flash="segment_saved")


@router.post("/segments/{segment_id}/rename")
def rename_segment(ctx: UserPage, segment_id: ID, name: Annotated[str, Form()] = "") -> Response:
    saved = access_segment(ctx.session, ctx.actor, segment_id, Permission.MANAGE_SEGMENTS)
    try:
        check_form_text(ctx.request)
        do_update_segment(ctx.session, ctx.actor, saved, name=name)
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        message = ctx._("Another segment already has this name.") if isinstance(exc, Conflict) else None
        if message is None:
            details = exc.details if isinstance(exc.details, dict) else {}
            message = ctx.fmt.gettext(str(details.get("name") or exc.message))
        return _rename_failed(ctx, segment_id, replace_unsafe_characters(name), message)
    return ctx.redirect(f"/contacts/segments/{saved.id}", flash="segment_saved")


def _rename_failed(ctx: WebContext, segment_id: int, typed: str, message: str) -> Response:
    segment = access_segment(ctx.session, ctx.actor, segment_id)
    context = {"segment": segment, "rename_value": typed, "rename_error": message}
    return ctx.render("contacts/segment_rename.html", context, status_code=422, active="contacts")


@router.get("/segments/{segment_id}/rename")
def rename_form(ctx: UserPage, segment_id: ID) -> Response:
    segment = access_segment(ctx.session, ctx.actor, segment_id, Permission.MANAGE_SEGMENTS)
    context = {"segment": segment, "rename_value": segment.name, "rename_error": None}
    return ctx.render("contacts/segment_rename.html", context, active="contacts")


@router.get("/segments/{segment_id}/delete")
def confirm_delete(ctx: UserPage, segment_id: ID) -> Response:
    segment = access_segment(ctx.session, ctx.actor, segment_id, Permission.MANAGE_SEGMENTS)
    return ctx.render("contacts/segment_delete.html", {"segment": segment, "error": None}, active="contacts")


@router.post("/segments/{segment_id}/delete")
def delete_segment(ctx: UserPage, segment_id: ID) -> Response:
    segment = access_segment(ctx.session, ctx.actor, segment_id, Permission.MANAGE_SEGMENTS)
    try:
        do_delete_segment(ctx.session, ctx.actor, segment)
    except Conflict as exc:
        ctx.session.rollback()
        used_by = exc.details.get("used_by", []) if isinstance(exc.details, dict) else []
        names = ", ".join(str(item.get("name")) for item in used_by if isinstance(item, dict))
        error = ctx._("This segment is used by other segments (%(names)s); change those first.", names=names)
        segment = access_segment(ctx.session, ctx.actor, segment_id)
        context = {"segment": segment, "error": error}
        return ctx.render("contacts/segment_delete.html", context, status_code=409, active="contacts")
    return ctx.redirect("/contacts", flash="segment_deleted")
