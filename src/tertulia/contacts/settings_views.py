"""Settings > Custom fields and Settings > Tags. The rules live in contacts/service.py; these pages
only turn its refusals into messages beside the field, keeping what was typed.
"""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import Response

from tertulia.contacts import repository as contacts_repo
from tertulia.contacts.models import CustomField, FieldType
from tertulia.contacts.service import (
    access_custom_field,
    access_tag,
    do_create_custom_field,
    do_delete_custom_field,
    do_delete_tag,
    do_rename_tag,
    do_update_custom_field,
)
from tertulia.kit.errors import Conflict, DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text
from tertulia.kit.types import ID
from tertulia.segments import repository as segments_repo
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors, first_message, keep_one, submit
from tertulia.web.sections import Section, open_section, render_section, section_page

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

FIELDS = Section("fields", i18n.lazy("Custom fields"), Permission.MANAGE_CUSTOM_FIELDS)
TAGS = Section("tags", i18n.lazy("Tags"), Permission.MANAGE_TAGS)

FIELD_TYPE_LABELS: dict[str, str] = {
    FieldType.TEXT.value: i18n.lazy("Text"),
    FieldType.NUMBER.value: i18n.lazy("Number"),
    FieldType.DATE.value: i18n.lazy("Date"),
    FieldType.DATETIME.value: i18n.lazy("Date and time"),
    FieldType.LIST.value: i18n.lazy("List"),
    FieldType.CHECKBOX.value: i18n.lazy("Checkbox"),
    FieldType.EMAIL.value: i18n.lazy("Email"),
    FieldType.URL.value: i18n.lazy("URL"),
    FieldType.PHONE.value: i18n.lazy("Phone"),
}


def _render(
    ctx: WebContext, section: Section, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    return render_section(ctx, section, f"contacts/settings/{template}", context, status_code=status_code)


# ----- custom fields ------------------------------------------------------------------------


def segments_using_field(ctx: WebContext, key: str) -> list[str]:
    """Names of the saved segments whose filter has a condition on this custom field."""
    names = {seg_id: name for seg_id, name, _at in segments_repo.segment_versions(ctx.session, ctx.actor.workspace_id)}
    found: list[str] = []
    for segment_id, raw in segments_repo.segment_filters(ctx.session, ctx.actor.workspace_id).items():
        groups = raw.get("groups") if isinstance(raw, dict) else None
        for group in groups if isinstance(groups, list) else []:
            conditions = group.get("conditions") if isinstance(group, dict) else None
            if any(
                isinstance(c, dict) and c.get("category") == "contact_field" and c.get("field") == key
                for c in (conditions if isinstance(conditions, list) else [])
            ):
                found.append(names.get(segment_id, str(segment_id)))
                break
    return sorted(found, key=str.casefold)


@section_page(router, "/fields", FIELDS)
def _fields(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    context = {
        "fields": contacts_repo.custom_fields(ctx.session, ctx.actor.workspace_id),
        "types": FIELD_TYPE_LABELS,
        # A row's rename keeps only its own input: the new-field form starts empty beside it.
        "typed": {"key": "", "label": "", "type": "text", "options": "", **(typed or {})},
        "errors": errors or {},
    }
    return _render(ctx, FIELDS, "fields.html", context, status_code=422 if errors else 200)


def _options(text: str) -> list[str] | None:
    items = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    return items or None


@router.post("/fields")
def create_field(
    ctx: UserPage,
    key: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "text",
    options: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, FIELDS)

    def create() -> CustomField:
        if type not in FIELD_TYPE_LABELS:
            raise ValidationFailed.field("type", "must be one of the options")
        chosen = FieldType(type)
        options_list = _options(options) if chosen == FieldType.LIST else None
        return do_create_custom_field(ctx.session, ctx.actor, key.strip(), label, chosen, options_list)

    def again(exc: DomainError) -> Response:
        errors = {("options" if k.startswith("options") else k): v for k, v in field_errors(ctx, exc).items()}
        if isinstance(exc, Conflict):
            errors = {"key": ctx._("A field with this key already exists.")}
        typed = {"key": key, "label": label, "type": type, "options": options}
        return _fields(ctx, typed=typed, errors=errors)

    return submit(ctx, create, again=again, redirect="/settings/fields", flash="field_saved")


@router.post("/fields/{key}/rename")
def rename_field(ctx: UserPage, key: str, label: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, FIELDS)
    definition = access_custom_field(ctx.session, ctx.actor, key)
    return submit(
        ctx,
        lambda: do_update_custom_field(ctx.session, ctx.actor, definition, label=label),
        again=keep_one(partial(_fields, ctx), f"label-{key}", label, lambda exc: first_message(field_errors(ctx, exc))),
        redirect="/settings/fields",
        flash="field_saved",
        catch=(ValidationFailed,),
    )


@router.post("/fields/{key}/move")
def move_field(ctx: UserPage, key: str, direction: Annotated[str, Form()] = "up") -> Response:
    open_section(ctx, FIELDS)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _fields(ctx, errors={f"direction-{key}": first_message(field_errors(ctx, exc))})
    ordered: list[CustomField] = contacts_repo.custom_fields(ctx.session, ctx.actor.workspace_id)
    index = next((i for i, d in enumerate(ordered) if d.key == key), None)
    if index is None:
        access_custom_field(ctx.session, ctx.actor, key)  # raises the 404
        return ctx.redirect("/settings/fields")
    other = index - 1 if direction == "up" else index + 1
    if 0 <= other < len(ordered):
        ordered[index], ordered[other] = ordered[other], ordered[index]
        # Positions are rewritten as 0..n-1 so ties left by older data cannot block a move.
        for position, definition in enumerate(ordered):
            if definition.position != position:
                do_update_custom_field(ctx.session, ctx.actor, definition, position=position)
    return ctx.redirect("/settings/fields")


@router.get("/fields/{key}/delete")
def confirm_delete_field(ctx: UserPage, key: str) -> Response:
    open_section(ctx, FIELDS)
    definition = access_custom_field(ctx.session, ctx.actor, key)
    context = {"field": definition, "used_by": segments_using_field(ctx, key)}
    return _render(ctx, FIELDS, "field_delete.html", context)


@router.post("/fields/{key}/delete")
def delete_field(ctx: UserPage, key: str) -> Response:
    open_section(ctx, FIELDS)
    definition = access_custom_field(ctx.session, ctx.actor, key)
    do_delete_custom_field(ctx.session, ctx.actor, definition)
    return ctx.redirect("/settings/fields", flash="field_deleted")


# ----- tags ---------------------------------------------------------------------------------


@section_page(router, "/tags", TAGS)
def _tags(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    context = {
        "tags": contacts_repo.tags_with_usage(ctx.session, ctx.actor.workspace_id),
        "typed": typed or {},
        "errors": errors or {},
    }
    return _render(ctx, TAGS, "tags.html", context, status_code=422 if errors else 200)


@router.post("/tags/{tag_id}/rename")
def rename_tag(ctx: UserPage, tag_id: ID, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, TAGS)
    tag = access_tag(ctx.session, ctx.actor, tag_id)

    def message(exc: DomainError) -> str:
        if isinstance(exc, Conflict):
            return ctx._("Another tag already has this name.")
        return first_message(field_errors(ctx, exc))

    return submit(
        ctx,
        lambda: do_rename_tag(ctx.session, ctx.actor, tag, name),
        again=keep_one(partial(_tags, ctx), str(tag_id), name, message),
        redirect="/settings/tags",
        flash="tag_saved",
    )


@router.post("/tags/{tag_id}/delete")
def delete_tag(ctx: UserPage, tag_id: ID) -> Response:
    open_section(ctx, TAGS)
    do_delete_tag(ctx.session, ctx.actor, access_tag(ctx.session, ctx.actor, tag_id))
    return ctx.redirect("/settings/tags", flash="tag_deleted")
