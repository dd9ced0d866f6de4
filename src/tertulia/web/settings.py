"""Workspace settings in the web app: general, users and invitations, teams, custom fields, tags and
API tokens. Each page checks its own permission (docs/permissions.md); the sub-navigation lists only
the pages the person may open.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel
from starlette.responses import RedirectResponse, Response

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
from tertulia.kit.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from tertulia.segments import repository as segments_repo
from tertulia.users.invitations import do_invite, do_revoke_invitation, list_invitations
from tertulia.users.models import Role
from tertulia.users.permissions import Permission
from tertulia.users.service import (
    IssuedToken,
    do_change_role,
    do_create_api_token_for,
    do_deactivate_member,
    do_reactivate_member,
    do_revoke_api_token_for,
    list_api_tokens_for,
    list_members,
)
from tertulia.users.teams import do_create_team, do_delete_team, do_rename_team, do_set_team_members, list_teams
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import first_message, keep_one, submit
from tertulia.web.views import COMMON_TIMEZONES, field_errors
from tertulia.workspaces.service import SUPPORTED_LANGUAGES, do_update_workspace, get_workspace

router = APIRouter(prefix="/settings", include_in_schema=False)


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    permission: Permission


SECTIONS: tuple[Section, ...] = (
    Section("general", i18n.lazy("General"), Permission.MANAGE_WORKSPACE),
    Section("users", i18n.lazy("Users"), Permission.MANAGE_USERS),
    Section("teams", i18n.lazy("Teams"), Permission.MANAGE_TEAMS),
    Section("fields", i18n.lazy("Custom fields"), Permission.MANAGE_CUSTOM_FIELDS),
    Section("tags", i18n.lazy("Tags"), Permission.MANAGE_TAGS),
    # Snippets and closing categories: their pages live in web/inbox_settings.py.
    Section("snippets", i18n.lazy("Snippets"), Permission.MANAGE_SNIPPETS),
    Section("closing-categories", i18n.lazy("Closing categories"), Permission.MANAGE_WORKSPACE),
    Section("tokens", i18n.lazy("API tokens"), Permission.MANAGE_API_TOKENS),
    # Its pages live in channels/views.py.
    Section("channels", i18n.lazy("Channels"), Permission.MANAGE_CHANNELS),
)
SETTINGS_PERMISSIONS = tuple(section.permission for section in SECTIONS)
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
ROLE_LABELS: dict[str, str] = {
    Role.OWNER.value: i18n.lazy("Owner"),
    Role.MANAGER.value: i18n.lazy("Manager"),
    Role.AGENT.value: i18n.lazy("Agent"),
}


def open_section(ctx: WebContext, key: str) -> Section:
    """Checks the section's permission (403 without it)."""
    section = next(s for s in SECTIONS if s.key == key)
    ctx.actor.require(section.permission)
    return section


def render_section(
    ctx: WebContext, key: str, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """A settings page: `template` extends settings/_layout.html, whose sub-navigation lists the
    sections the person may open, with `key` marked as the current one."""
    sections = [(s.key, ctx.fmt.gettext(s.label)) for s in SECTIONS if ctx.actor.can(s.permission)]
    values: dict[str, Any] = {"sections": sections, "section": key}
    values.update(context)
    return ctx.render(template, values, status_code=status_code, active="settings")


Page = Callable[..., Response]


def section_page(router: APIRouter, path: str, key: str) -> Callable[[Page], Page]:
    """Decorates the function that builds a section's page, `page(ctx, **kept)`: registers
    `GET path`, which checks the section's permission and shows `page(ctx)`. The section's forms
    call the same function again with what was typed and the errors."""

    def register(page: Page) -> Page:
        def view(ctx: UserPage) -> Response:
            open_section(ctx, key)
            return page(ctx)

        view.__name__ = view.__qualname__ = page.__name__.strip("_") + "_page"
        router.get(path)(view)
        return page

    return register


def _render(ctx: WebContext, key: str, template: str, context: dict[str, Any], *, status_code: int = 200) -> Response:
    return render_section(ctx, key, f"settings/{template}", context, status_code=status_code)


def _errors(ctx: WebContext, exc: DomainError) -> dict[str, str]:
    errors = field_errors(ctx, exc)
    if isinstance(exc, Conflict) and "name" not in errors and "__all__" in errors:
        errors = {"name": errors["__all__"]}
    return errors


@router.get("")
def settings_home(ctx: UserPage) -> Response:
    for section in SECTIONS:
        if ctx.actor.can(section.permission):
            return RedirectResponse(f"/settings/{section.key}", status_code=303)
    raise PermissionDenied("You do not have permission to do this.")


# ----- general ------------------------------------------------------------------------------


@section_page(router, "/general", "general")
def _general(ctx: WebContext, values: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    workspace = get_workspace(ctx.session, ctx.actor.workspace_id)
    values = values or {
        "name": workspace.name,
        "default_country": workspace.default_country or "",
        "timezone": workspace.timezone,
        "default_language": workspace.default_language,
        "agents_see_unassigned": "1" if workspace.agents_see_unassigned else "",
    }
    zones = list(COMMON_TIMEZONES)
    if values["timezone"] and values["timezone"] not in zones:
        zones.insert(0, values["timezone"])
    context = {"values": values, "errors": errors or {}, "timezones": zones, "workspace_languages": SUPPORTED_LANGUAGES}
    return _render(ctx, "general", "general.html", context, status_code=422 if errors else 200)


class GeneralForm(BaseModel):
    name: str = ""
    default_country: str = ""
    timezone: str = ""
    default_language: str = ""
    agents_see_unassigned: str = ""  # a checkbox: "1" when ticked, absent when not


@router.post("/general")
def save_general(ctx: UserPage, form: Annotated[GeneralForm, Form()]) -> Response:
    open_section(ctx, "general")
    values = form.model_dump()
    return submit(
        ctx,
        lambda: do_update_workspace(
            ctx.session,
            ctx.actor,
            name=form.name,
            default_country=form.default_country.strip() or None,
            timezone=form.timezone,
            default_language=form.default_language,
            agents_see_unassigned=bool(form.agents_see_unassigned),
        ),
        again=lambda exc: _general(ctx, values, _errors(ctx, exc)),
        redirect="/settings/general",
        flash="settings_saved",
    )


# ----- users --------------------------------------------------------------------------------


@section_page(router, "/users", "users")
def _users(
    ctx: WebContext, invite: dict[str, str] | None = None, errors: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    context = {
        "members": list_members(ctx.session, ctx.actor),
        "invitations": list_invitations(ctx.session, ctx.actor),
        "roles": ROLE_LABELS,
        "invite": invite or {"email": "", "role": Role.AGENT.value},
        "errors": errors or {},
    }
    return _render(ctx, "users", "users.html", context, status_code=status_code)


@router.post("/users/invite")
def invite(ctx: UserPage, email: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "agent") -> Response:
    open_section(ctx, "users")

    def again(exc: DomainError) -> Response:
        errors = field_errors(ctx, exc)
        if "__all__" in errors:
            errors = {"email": errors["__all__"]}
        return _users(ctx, {"email": email, "role": role}, errors, status_code=422)

    return submit(
        ctx,
        lambda: do_invite(ctx.session, ctx.actor, email, role),
        again=again,
        redirect="/settings/users",
        flash="invitation_sent",
        catch=(ValidationFailed, Conflict, PermissionDenied),
    )


@router.post("/users/{user_id}/role")
def change_role(ctx: UserPage, user_id: int, role: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, "users")

    def refuse(exc: DomainError) -> Response:
        # The role is a select in a table row: the refusal is shown as the error page.
        raise ValidationFailed(ctx.fmt.gettext(exc.message)) from exc

    return submit(
        ctx,
        lambda: do_change_role(ctx.session, ctx.actor, user_id, role),
        again=refuse,
        redirect="/settings/users",
        flash="settings_saved",
    )


@router.post("/users/{user_id}/deactivate")
def deactivate(ctx: UserPage, user_id: int) -> Response:
    open_section(ctx, "users")
    do_deactivate_member(ctx.session, ctx.actor, user_id)
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/users/{user_id}/reactivate")
def reactivate(ctx: UserPage, user_id: int) -> Response:
    open_section(ctx, "users")
    do_reactivate_member(ctx.session, ctx.actor, user_id)
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/invitations/{invitation_id}/revoke")
def revoke_invitation(ctx: UserPage, invitation_id: int) -> Response:
    open_section(ctx, "users")
    do_revoke_invitation(ctx.session, ctx.actor, invitation_id)
    return ctx.redirect("/settings/users", flash="invitation_revoked")


# ----- teams --------------------------------------------------------------------------------


@section_page(router, "/teams", "teams")
def _teams(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    people = {m.user.id: (m.user.full_name or m.user.email) for m in list_members(ctx.session, ctx.actor) if m.active}
    context = {
        "teams": list_teams(ctx.session, ctx.actor),
        "people": people,
        "typed": typed or {},
        "errors": errors or {},
    }
    return _render(ctx, "teams", "teams.html", context, status_code=422 if errors else 200)


@router.post("/teams")
def create_team(ctx: UserPage, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, "teams")
    return submit(
        ctx,
        lambda: do_create_team(ctx.session, ctx.actor, name),
        again=keep_one(partial(_teams, ctx), "new", name, lambda exc: first_message(_errors(ctx, exc))),
        redirect="/settings/teams",
        flash="team_saved",
    )


@router.post("/teams/{team_id}/rename")
def rename_team(ctx: UserPage, team_id: int, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, "teams")
    return submit(
        ctx,
        lambda: do_rename_team(ctx.session, ctx.actor, team_id, name),
        again=keep_one(partial(_teams, ctx), f"team-{team_id}", name, lambda exc: first_message(_errors(ctx, exc))),
        redirect="/settings/teams",
        flash="team_saved",
    )


@router.post("/teams/{team_id}/members")
def team_members(ctx: UserPage, team_id: int, members: Annotated[list[int] | None, Form()] = None) -> Response:
    open_section(ctx, "teams")
    do_set_team_members(ctx.session, ctx.actor, team_id, list(members or []))
    return ctx.redirect("/settings/teams", flash="team_saved")


@router.post("/teams/{team_id}/delete")
def delete_team(ctx: UserPage, team_id: int) -> Response:
    open_section(ctx, "teams")
    do_delete_team(ctx.session, ctx.actor, team_id)
    return ctx.redirect("/settings/teams", flash="team_deleted")


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


@section_page(router, "/fields", "fields")
def _fields(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    context = {
        "fields": contacts_repo.custom_fields(ctx.session, ctx.actor.workspace_id),
        "types": FIELD_TYPE_LABELS,
        "typed": typed or {"key": "", "label": "", "type": "text", "options": ""},
        "errors": errors or {},
    }
    return _render(ctx, "fields", "fields.html", context, status_code=422 if errors else 200)


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
    open_section(ctx, "fields")

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
    open_section(ctx, "fields")
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
    open_section(ctx, "fields")
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
    open_section(ctx, "fields")
    definition = access_custom_field(ctx.session, ctx.actor, key)
    context = {"field": definition, "used_by": segments_using_field(ctx, key)}
    return _render(ctx, "fields", "field_delete.html", context)


@router.post("/fields/{key}/delete")
def delete_field(ctx: UserPage, key: str) -> Response:
    open_section(ctx, "fields")
    definition = access_custom_field(ctx.session, ctx.actor, key)
    do_delete_custom_field(ctx.session, ctx.actor, definition)
    return ctx.redirect("/settings/fields", flash="field_deleted")


# ----- tags ---------------------------------------------------------------------------------


@section_page(router, "/tags", "tags")
def _tags(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    context = {
        "tags": contacts_repo.tags_with_usage(ctx.session, ctx.actor.workspace_id),
        "typed": typed or {},
        "errors": errors or {},
    }
    return _render(ctx, "tags", "tags.html", context, status_code=422 if errors else 200)


@router.post("/tags/{tag_id}/rename")
def rename_tag(ctx: UserPage, tag_id: int, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, "tags")
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
def delete_tag(ctx: UserPage, tag_id: int) -> Response:
    open_section(ctx, "tags")
    do_delete_tag(ctx.session, ctx.actor, access_tag(ctx.session, ctx.actor, tag_id))
    return ctx.redirect("/settings/tags", flash="tag_deleted")


# ----- API tokens ---------------------------------------------------------------------------


@section_page(router, "/tokens", "tokens")
def _tokens(
    ctx: WebContext, *, secret: str | None = None, typed: str = "", errors: dict[str, str] | None = None
) -> Response:
    context = {
        "tokens": [t for t in list_api_tokens_for(ctx.session, ctx.actor) if t.revoked_at is None],
        "secret": secret,
        "typed": typed,
        "errors": errors or {},
    }
    return _render(ctx, "tokens", "tokens.html", context, status_code=422 if errors else 200)


@router.post("/tokens")
def create_token(ctx: UserPage, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, "tokens")

    def issued(token: IssuedToken) -> Response:
        # The secret is shown in this response only; it is stored as an HMAC and cannot be shown again.
        response = _tokens(ctx, secret=token.secret)
        response.headers["Cache-Control"] = "no-store"
        return response

    return submit(
        ctx,
        lambda: do_create_api_token_for(ctx.session, ctx.actor, name),
        again=lambda exc: _tokens(ctx, typed=name, errors=field_errors(ctx, exc)),
        done=issued,
        catch=(ValidationFailed,),
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(ctx: UserPage, token_id: int) -> Response:
    open_section(ctx, "tokens")
    do_revoke_api_token_for(ctx.session, ctx.actor, token_id)
    return ctx.redirect("/settings/tokens", flash="token_revoked")
