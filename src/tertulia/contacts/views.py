"""Contacts in the web app: the list (search, unassigned, keyset paging, bulk actions), the contact
page (edit in place, tags, activity, identities), merge and split.

Every page works as plain HTML forms; htmx only swaps fragments to avoid full reloads. The list never
counts the whole table and never uses OFFSET, so it stays fast at a million contacts.
"""

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query
from sqlalchemy import select
from starlette.responses import Response

from tertulia.contacts import merge_suggestions
from tertulia.contacts import repository as repo
from tertulia.contacts.fields import SETTABLE_LABELS
from tertulia.contacts.models import Contact, CustomField, FieldType
from tertulia.contacts.service import (
    MERGEABLE_COLUMNS,
    access_contact,
    do_add_tags,
    do_block_contact,
    do_create_contact,
    do_delete_contact,
    do_end_visitor_sessions,
    do_merge_contacts,
    do_remove_tags,
    do_split_identity,
    do_unblock_contact,
    do_update_contact,
)
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text
from tertulia.kit.text import replace_unsafe_characters
from tertulia.kit.types import ID, is_id_text
from tertulia.users.permissions import Permission
from tertulia.users.service import member_names
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext, safe_next
from tertulia.web.forms import field_errors, first_message

router = APIRouter(prefix="/contacts", include_in_schema=False, route_class=CheckedInputRoute)

ACTIVITY_PAGE = 20
MAX_BULK = 500
MERGE_CANDIDATES = 10
EDITABLE_STANDARD = ("first_name", "last_name", "email", "phone", "language", "country", "assignee_id")
ACTIVITY_LABELS: dict[str, str] = {
    "created": i18n.lazy("created the contact"),
    "updated": i18n.lazy("changed"),
    "tag_added": i18n.lazy("added the tag"),
    "tag_removed": i18n.lazy("removed the tag"),
    "merged": i18n.lazy("merged another contact into this one"),
    "split": i18n.lazy("split an identity"),
    "identity_linked": i18n.lazy("linked a channel identity with the same phone or email"),
    # How the customer arrived: a Telegram /start deep link, an ad (payload "referral" of a message).
    "referral": i18n.lazy("arrived through a link"),
    "sessions_ended": i18n.lazy("ended the web-chat sessions"),
}

SUGGESTION_REASONS: dict[str, str] = {
    "phone": i18n.lazy("Same phone number"),
    "email": i18n.lazy("Same email address"),
    "name": i18n.lazy("Same full name"),
}


# ----- helpers ------------------------------------------------------------------------------


def _contact(ctx: WebContext, contact_id: int, permission: Permission = Permission.VIEW_CONTACTS) -> Contact:
    return access_contact(ctx.session, ctx.actor, f"id:{contact_id}", permission)


@dataclass
class FieldView:
    """One editable property of a contact, as the contact page shows and edits it."""

    name: str  # "email" or "custom_fields.plan"
    label: str
    kind: str  # input kind: text, email, tel, date, number, select, url
    value: Any  # stored value
    display: str
    options: list[tuple[str, str]] | None = None  # (value, label) for selects

    @property
    def raw(self) -> str:
        if self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return str(self.value)


def _display(ctx: WebContext, definition: CustomField | None, value: Any) -> str:
    if value is None or value == "":
        return ""
    if definition is not None:
        if definition.type == FieldType.CHECKBOX:
            return ctx._("Yes") if value else ctx._("No")
        if definition.type == FieldType.NUMBER and isinstance(value, int | float):
            return ctx.fmt.number(value)
        if definition.type == FieldType.DATE and isinstance(value, str):
            try:
                return ctx.fmt.date(value)
            except ValueError:
                return value
    return str(value)


def field_views(ctx: WebContext, contact: Contact, people: dict[int, str]) -> tuple[list[FieldView], list[FieldView]]:
    standard: list[FieldView] = []
    kinds = {"email": "email", "phone": "tel"}
    for name in EDITABLE_STANDARD:
        value = getattr(contact, name)
        label = ctx.fmt.gettext(SETTABLE_LABELS[name])
        if name == "assignee_id":
            options = [("", ctx._("Unassigned"))] + [(str(uid), person) for uid, person in people.items()]
            display = people.get(value, "") if value is not None else ""
            standard.append(FieldView(name, label, "select", value, display, options))
        elif name == "phone":
            standard.append(FieldView(name, label, "tel", contact.phone_raw or value, value or ""))
        else:
            standard.append(FieldView(name, label, kinds.get(name, "text"), value, value or ""))
    custom: list[FieldView] = []
    stored = contact.custom or {}
    for definition in repo.custom_fields(ctx.session, ctx.actor.workspace_id):
        value = stored.get(definition.key)
        choices: list[tuple[str, str]] | None = None
        kind = "text"
        match definition.type:
            case FieldType.LIST:
                kind = "select"
                choices = [("", "—")] + [(o, o) for o in definition.options or []]
            case FieldType.CHECKBOX:
                kind = "select"
                choices = [("", "—"), ("true", ctx._("Yes")), ("false", ctx._("No"))]
            case FieldType.DATE:
                kind = "date"
            case FieldType.EMAIL:
                kind = "email"
            case FieldType.URL:
                kind = "url"
            case FieldType.PHONE:
                kind = "tel"
            case FieldType.NUMBER:
                kind = "number"
        custom.append(
            FieldView(
                f"custom_fields.{definition.key}",
                definition.label,
                kind,
                value,
                _display(ctx, definition, value),
                choices,
            )
        )
    return standard, custom


def _find_field(ctx: WebContext, contact: Contact, name: str) -> FieldView:
    standard, custom = field_views(ctx, contact, member_names(ctx.session, ctx.actor.workspace_id))
    for view in standard + custom:
        if view.name == name:
            return view
    raise NotFound(f"No field {name}.")


def _values_for(view: FieldView, typed: str) -> dict[str, Any]:
    """The update body for one field from what was typed; an empty box clears the value."""
    value: Any = typed.strip() or None
    if view.name == "assignee_id":
        value = int(typed) if typed.strip().isdigit() else None
    if view.name.startswith("custom_fields."):
        return {"custom_fields": {view.name.split(".", 1)[1]: value}}
    return {view.name: value}


def _activity_text(ctx: WebContext, row: Any, fields: dict[str, str]) -> dict[str, Any]:
    field_label = ""
    if row.field:
        field_label = fields.get(row.field, row.field)
    return {
        "id": row.id,
        "action": ctx.fmt.gettext(ACTIVITY_LABELS.get(row.action, row.action)),
        "kind": row.action,
        "field": field_label,
        "old": _short(row.old_value),
        "new": _short(row.new_value),
        "at": row.created_at,
        "actor_user_id": row.actor_user_id,
        "actor_kind": row.actor_kind,
    }


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("name") or value.get("id") or value.get("ref") or value.get("channel") or "")
    return str(value)


def _list_url(q: str, view: str) -> str:
    params = []
    if q:
        params.append(f"q={quote(q)}")
    if view == "unassigned":
        params.append("view=unassigned")
    return "/contacts" + ("?" + "&".join(params) if params else "")


# ----- list ---------------------------------------------------------------------------------


@router.get("")
def contact_list(
    ctx: UserPage,
    q: Annotated[str, Query(max_length=200)] = "",
    view: str = "all",
    after: ID | None = None,
) -> Response:
    return _list_page(ctx, q, view, after)


def _list_page(
    ctx: WebContext,
    q: str = "",
    view: str = "all",
    after: ID | None = None,
    *,
    bulk_errors: dict[str, str] | None = None,
) -> Response:
    ctx.actor.require(Permission.VIEW_CONTACTS)
    unassigned = view == "unassigned"
    query = repo.contacts_page_query(
        ctx.actor.workspace_id, after_id=after, limit=repo.CONTACTS_PAGE_SIZE, search=q or None, unassigned=unassigned
    )
    rows: list[Contact] = list(ctx.session.scalars(query))
    has_more = len(rows) > repo.CONTACTS_PAGE_SIZE
    rows = rows[: repo.CONTACTS_PAGE_SIZE]
    context: dict[str, Any] = {
        "contacts": rows,
        "tags": repo.tag_names_by_contact(ctx.session, [c.id for c in rows]),
        "people": member_names(ctx.session, ctx.actor.workspace_id),
        "next_after": rows[-1].id if has_more and rows else None,
        "q": q,
        "view": "unassigned" if unassigned else "all",
        "first_page": after is None,
        "list_url": _list_url(q, view),
        "bulk_errors": bulk_errors or {},
    }
    target = ctx.request.headers.get("HX-Target")
    if ctx.is_htmx and target in ("contact-rows", "load-more"):
        return ctx.render("contacts/_rows.html", context)
    context["all_tags"] = repo.tag_suggestions(ctx.session, ctx.actor.workspace_id)
    return ctx.render("contacts/list.html", context, status_code=422 if bulk_errors else 200, active="contacts")


@router.post("/bulk")
def bulk(
    ctx: UserPage,
    action: Annotated[str, Form()] = "",
    ids: Annotated[list[ID] | None, Form()] = None,
    tag: Annotated[str, Form()] = "",
    assignee: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    return_to: Annotated[str, Form()] = "/contacts",
) -> Response:
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _list_page(ctx, bulk_errors=field_errors(ctx, exc))
    back = safe_next(return_to)
    chosen = list(dict.fromkeys(ids or []))[:MAX_BULK]
    if not chosen:
        return ctx.redirect(back, flash="nothing_selected")
    contacts = list(
        ctx.session.scalars(
            select(Contact).where(Contact.workspace_id == ctx.actor.workspace_id, Contact.id.in_(chosen))
        )
    )
    if action == "delete":
        ctx.actor.require(Permission.DELETE_CONTACTS)
        if confirm != "yes":
            context = {"contacts": contacts, "return_to": back}
            return ctx.render("contacts/bulk_confirm.html", context, active="contacts")
        for contact in contacts:
            do_delete_contact(ctx.session, ctx.actor, contact)
        return ctx.redirect(back, flash="contacts_deleted")
    try:
        for contact in contacts:
            if action == "add_tag":
                do_add_tags(ctx.session, ctx.actor, contact, [tag])
            elif action == "remove_tag":
                do_remove_tags(ctx.session, ctx.actor, contact, [tag])
            elif action == "assign":
                assignee_id = int(assignee) if is_id_text(assignee) else None
                do_update_contact(ctx.session, ctx.actor, contact, {"assignee_id": assignee_id})
            else:
                raise ValidationFailed.field("action", "unknown bulk action")
    except ValidationFailed as exc:
        ctx.session.rollback()
        raise ValidationFailed(
            ctx.fmt.gettext("Nothing was changed: ") + "; ".join(field_errors(ctx, exc).values())
        ) from exc
    return ctx.redirect(back, flash="bulk_done")


# ----- create -------------------------------------------------------------------------------

NEW_FIELDS = ("first_name", "last_name", "email", "phone")


@router.get("/new")
def new_contact(ctx: UserPage) -> Response:
    ctx.actor.require(Permission.EDIT_CONTACTS)
    values = dict.fromkeys(NEW_FIELDS, "")
    values["tags"] = ""
    return ctx.render("contacts/new.html", {"values": values, "errors": {}}, active="contacts")


@router.post("")
def create_contact(
    ctx: UserPage,
    first_name: Annotated[str, Form()] = "",
    last_name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
) -> Response:
    typed = {"first_name": first_name, "last_name": last_name, "email": email, "phone": phone, "tags": tags}
    body: dict[str, Any] = {name: typed[name].strip() or None for name in NEW_FIELDS}
    tag_names = [t.strip() for t in tags.split(",") if t.strip()]
    if tag_names:
        body["tags"] = tag_names
    try:
        check_form_text(ctx.request)
        contact = do_create_contact(ctx.session, ctx.actor, body)
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        errors = field_errors(ctx, exc)
        errors = {("tags" if key.startswith("tags") else key): msg for key, msg in errors.items()}
        shown = replace_unsafe_characters(typed)  # a lone surrogate cannot even be encoded into the page
        return ctx.render("contacts/new.html", {"values": shown, "errors": errors}, status_code=422, active="contacts")
    return ctx.redirect(f"/contacts/{contact.id}", flash="contact_created")


# ----- contact page -------------------------------------------------------------------------


def _detail_context(
    ctx: WebContext,
    contact: Contact,
    *,
    before: ID | None = None,
    editing: str | None = None,
    edit_value: str | None = None,
    edit_error: str | None = None,
) -> dict[str, Any]:
    people = member_names(ctx.session, ctx.actor.workspace_id)
    standard, custom = field_views(ctx, contact, people)
    labels = {v.name: v.label for v in standard + custom}
    labels.update({k: ctx.fmt.gettext(v) for k, v in SETTABLE_LABELS.items()})
    labels["tags"] = ctx._("Tags")
    labels["identities"] = ctx._("Identities")
    labels["blocked"] = ctx._("Blocked")
    activity_rows = repo.activity_page(ctx.session, contact.id, before_id=before, limit=ACTIVITY_PAGE)
    more_activity = len(activity_rows) > ACTIVITY_PAGE
    activity_rows = activity_rows[:ACTIVITY_PAGE]
    return {
        "contact": contact,
        "standard": standard,
        "custom": custom,
        "tags": repo.tag_names_by_contact(ctx.session, [contact.id]).get(contact.id, []),
        "all_tags": repo.tag_suggestions(ctx.session, ctx.actor.workspace_id),
        "identities": repo.identities(ctx.session, contact.id),
        "suggestions": merge_suggestions.open_suggestions(ctx.session, ctx.actor, contact),
        "suggestion_reasons": {key: ctx.fmt.gettext(label) for key, label in SUGGESTION_REASONS.items()},
        "activity": [_activity_text(ctx, row, labels) for row in activity_rows],
        "older_activity": activity_rows[-1].id if more_activity and activity_rows else None,
        "people": people,
        "editing": editing,
        "edit_value": edit_value,
        "edit_error": edit_error,
        "tag_error": None,
        "tag_value": "",
    }


@router.get("/{contact_id}")
def contact_page(ctx: UserPage, contact_id: ID, edit: str | None = None, before: ID | None = None) -> Response:
    contact = _contact(ctx, contact_id)
    context = _detail_context(ctx, contact, before=before, editing=edit)
    if ctx.is_htmx and ctx.request.headers.get("HX-Target") == "activity-more":
        return ctx.render("contacts/_activity.html", context)
    return ctx.render("contacts/detail.html", context, active="contacts")


@router.get("/{contact_id}/fields/{name}")
def field_display(ctx: UserPage, contact_id: ID, name: str) -> Response:
    contact = _contact(ctx, contact_id)
    view = _find_field(ctx, contact, name)
    return ctx.render("contacts/_field.html", {"contact": contact, "f": view, "editing": None})


@router.get("/{contact_id}/fields/{name}/edit")
def field_edit(ctx: UserPage, contact_id: ID, name: str) -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    view = _find_field(ctx, contact, name)
    context = {"contact": contact, "f": view, "editing": name, "edit_value": view.raw, "edit_error": None}
    return ctx.render("contacts/_field.html", context)


@router.post("/{contact_id}/fields/{name}")
def field_save(ctx: UserPage, contact_id: ID, name: str, value: Annotated[str, Form()] = "") -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    view = _find_field(ctx, contact, name)
    try:
        check_form_text(ctx.request)
        do_update_contact(ctx.session, ctx.actor, contact, _values_for(view, value))
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        errors = field_errors(ctx, exc)
        message = errors.get(name) or next(iter(errors.values()))
        value = replace_unsafe_characters(value)  # shown again: a lone surrogate cannot be encoded
        if ctx.is_htmx:
            context = {"contact": contact, "f": view, "editing": name, "edit_value": value, "edit_error": message}
            return ctx.render("contacts/_field.html", context, status_code=422)
        context = _detail_context(ctx, contact, editing=name, edit_value=value, edit_error=message)
        return ctx.render("contacts/detail.html", context, status_code=422, active="contacts")
    if not ctx.is_htmx:
        return ctx.redirect(f"/contacts/{contact.id}")
    view = _find_field(ctx, contact, name)
    response = ctx.render("contacts/_field.html", {"contact": contact, "f": view, "editing": None})
    response.headers["HX-Trigger"] = "contact-changed"
    return response


def _tags_response(ctx: WebContext, contact: Contact, *, error: str | None = None, typed: str = "") -> Response:
    if not ctx.is_htmx:
        if error:
            context = _detail_context(ctx, contact)
            context.update(tag_error=error, tag_value=typed)
            return ctx.render("contacts/detail.html", context, status_code=422, active="contacts")
        return ctx.redirect(f"/contacts/{contact.id}")
    context = {
        "contact": contact,
        "tags": repo.tag_names_by_contact(ctx.session, [contact.id]).get(contact.id, []),
        "all_tags": repo.tag_suggestions(ctx.session, ctx.actor.workspace_id),
        "tag_error": error,
        "tag_value": typed,
    }
    response = ctx.render("contacts/_tags.html", context, status_code=422 if error else 200)
    if not error:
        response.headers["HX-Trigger"] = "contact-changed"
    return response


@router.post("/{contact_id}/tags")
def add_tag(ctx: UserPage, contact_id: ID, tag: Annotated[str, Form()] = "") -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        shown = replace_unsafe_characters(tag)
        return _tags_response(ctx, contact, error=first_message(field_errors(ctx, exc)), typed=shown)
    try:
        do_add_tags(ctx.session, ctx.actor, contact, [t.strip() for t in tag.split(",")] if tag.strip() else [tag])
    except ValidationFailed:
        ctx.session.rollback()
        return _tags_response(ctx, contact, error=ctx._("Type a tag name (at most 100 characters)."), typed=tag)
    return _tags_response(ctx, contact)


@router.post("/{contact_id}/tags/remove")
def remove_tag(ctx: UserPage, contact_id: ID, tag: Annotated[str, Form()] = "") -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _tags_response(ctx, contact, error=first_message(field_errors(ctx, exc)))
    do_remove_tags(ctx.session, ctx.actor, contact, [tag])
    return _tags_response(ctx, contact)


@router.get("/{contact_id}/delete")
def confirm_delete(ctx: UserPage, contact_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.DELETE_CONTACTS)
    context = {"contacts": [contact], "return_to": "/contacts"}
    return ctx.render("contacts/bulk_confirm.html", context, active="contacts")


# ----- merge and split ----------------------------------------------------------------------


@router.get("/{contact_id}/merge")
def merge_search(ctx: UserPage, contact_id: ID, q: Annotated[str, Query(max_length=200)] = "") -> Response:
    contact = _contact(ctx, contact_id, Permission.MERGE_CONTACTS)
    candidates: list[Contact] = []
    if q.strip():
        query = repo.contacts_page_query(
            ctx.actor.workspace_id,
            after_id=None,
            limit=MERGE_CANDIDATES,
            search=q,
            extra=Contact.id != contact.id,
        )
        candidates = list(ctx.session.scalars(query))[:MERGE_CANDIDATES]
    context = {"contact": contact, "q": q, "candidates": candidates}
    if ctx.is_htmx and ctx.request.headers.get("HX-Target") == "merge-results":
        return ctx.render("contacts/_merge_results.html", context)
    return ctx.render("contacts/merge_search.html", context, active="contacts")


def _merge_rows(ctx: WebContext, survivor: Contact, other: Contact) -> list[dict[str, Any]]:
    """Fields where both contacts hold a different value: the person picks which one survives."""
    rows: list[dict[str, Any]] = []
    for column in MERGEABLE_COLUMNS:
        mine, theirs = getattr(survivor, column), getattr(other, column)
        if mine is not None and theirs is not None and mine != theirs:
            label = ctx.fmt.gettext(SETTABLE_LABELS[column])
            if column == "assignee_id":
                people = member_names(ctx.session, ctx.actor.workspace_id)
                mine, theirs = people.get(mine, mine), people.get(theirs, theirs)
            rows.append({"name": column, "label": label, "mine": mine, "theirs": theirs})
    definitions = {d.key: d for d in repo.custom_fields(ctx.session, ctx.actor.workspace_id)}
    for key, theirs in (other.custom or {}).items():
        mine = (survivor.custom or {}).get(key)
        if mine is not None and theirs is not None and mine != theirs:
            definition = definitions.get(key)
            rows.append(
                {
                    "name": key,
                    "label": definition.label if definition else key,
                    "mine": _display(ctx, definition, mine),
                    "theirs": _display(ctx, definition, theirs),
                }
            )
    return rows


@router.get("/{contact_id}/merge/{other_id}")
def merge_pick(ctx: UserPage, contact_id: ID, other_id: ID) -> Response:
    survivor = _contact(ctx, contact_id, Permission.MERGE_CONTACTS)
    other = _contact(ctx, other_id, Permission.MERGE_CONTACTS)
    if survivor.id == other.id:
        raise ValidationFailed.field("other", "cannot merge a contact with itself")
    return _merge_page(ctx, survivor, other)


def _merge_page(ctx: WebContext, survivor: Contact, other: Contact, errors: dict[str, str] | None = None) -> Response:
    rows = _merge_rows(ctx, survivor, other)
    context = {"contact": survivor, "other": other, "rows": rows, "errors": errors or {}}
    return ctx.render("contacts/merge_pick.html", context, status_code=422 if errors else 200, active="contacts")


@router.post("/{contact_id}/merge/{other_id}")
def merge(ctx: UserPage, contact_id: ID, other_id: ID) -> Response:
    survivor = _contact(ctx, contact_id, Permission.MERGE_CONTACTS)
    other = _contact(ctx, other_id, Permission.MERGE_CONTACTS)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _merge_page(ctx, survivor, other, field_errors(ctx, exc))
    # One radio group per conflicting field, named keep.<field>: "theirs" means the other's value wins.
    take = [key.split(".", 1)[1] for key, value in ctx.form.items() if key.startswith("keep.") and value == "theirs"]
    do_merge_contacts(ctx.session, ctx.actor, survivor, other, take)
    return ctx.redirect(f"/contacts/{survivor.id}", flash="merged")


# ----- blocking -------------------------------------------------------------------------------


@router.post("/{contact_id}/block")
def block(ctx: UserPage, contact_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    do_block_contact(ctx.session, ctx.actor, contact)
    return ctx.redirect(safe_next(ctx.current_page or f"/contacts/{contact.id}"), flash="contact_blocked")


@router.post("/{contact_id}/unblock")
def unblock(ctx: UserPage, contact_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    do_unblock_contact(ctx.session, ctx.actor, contact)
    return ctx.redirect(safe_next(ctx.current_page or f"/contacts/{contact.id}"), flash="contact_unblocked")


@router.post("/{contact_id}/end-sessions")
def end_sessions(ctx: UserPage, contact_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.EDIT_CONTACTS)
    do_end_visitor_sessions(ctx.session, ctx.actor, contact)
    return ctx.redirect(f"/contacts/{contact.id}", flash="sessions_ended")


@router.post("/{contact_id}/identities/{identity_id}/split")
def split(ctx: UserPage, contact_id: ID, identity_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.MERGE_CONTACTS)
    new_contact = do_split_identity(ctx.session, ctx.actor, contact, identity_id)
    return ctx.redirect(f"/contacts/{new_contact.id}", flash="split")


@router.post("/{contact_id}/merge_suggestions/{suggestion_id}/accept")
def accept_suggestion(ctx: UserPage, contact_id: ID, suggestion_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.MERGE_CONTACTS)
    row = merge_suggestions.access_suggestion(ctx.session, ctx.actor, contact, suggestion_id)
    survivor = merge_suggestions.do_accept(ctx.session, ctx.actor, row)
    return ctx.redirect(f"/contacts/{survivor.id}", flash="merged")


@router.post("/{contact_id}/merge_suggestions/{suggestion_id}/dismiss")
def dismiss_suggestion(ctx: UserPage, contact_id: ID, suggestion_id: ID) -> Response:
    contact = _contact(ctx, contact_id, Permission.MERGE_CONTACTS)
    row = merge_suggestions.access_suggestion(ctx.session, ctx.actor, contact, suggestion_id)
    merge_suggestions.do_dismiss(ctx.session, ctx.actor, row)
    return ctx.redirect(f"/contacts/{contact.id}", flash="suggestion_dismissed")
