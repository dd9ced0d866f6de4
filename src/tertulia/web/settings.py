"""Workspace settings in the web app: general, users and invitations, teams, custom fields, tags and
API tokens. Each page checks its own permission (docs/permissions.md); the sub-navigation lists only
the pages the person may open.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form
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


def _open(ctx: WebContext, key: str) -> Section:
    section = next(s for s in SECTIONS if s.key == key)
    ctx.actor.require(section.permission)
    return section


def _render(ctx: WebContext, key: str, template: str, context: dict[str, Any], *, status_code: int = 200) -> Response:
    sections = [(s.key, ctx.fmt.gettext(s.label)) for s in SECTIONS if ctx.actor.can(s.permission)]
    values = {"sections": sections, "section": key}
    values.update(context)
    return ctx.render(f"settings/{template}", values, status_code=status_code, active="settings")


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


def _general(ctx: WebContext, values: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    workspace = get_workspace(ctx.session, ctx.actor.workspace_id)
    values = values or {
        "name": workspace.name,
        "default_country": workspace.default_country or "",
        "timezone": workspace.timezone,
        "default_language": workspace.default_language,
    }
    zones = list(COMMON_TIMEZONES)
    if values["timezone"] and values["timezone"] not in zones:
        zones.insert(0, values["timezone"])
    context = {"values": values, "errors": errors or {}, "timezones": zones, "workspace_languages": SUPPORTED_LANGUAGES}
    return _render(ctx, "general", "general.html", context, status_code=422 if errors else 200)


@router.get("/general")
def general(ctx: UserPage) -> Response:
    _open(ctx, "general")
    return _general(ctx)


@router.post("/general")
def save_general(
    ctx: UserPage,
    name: Annotated[str, Form()] = "",
    default_country: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    default_language: Annotated[str, Form()] = "",
) -> Response:
    _open(ctx, "general")
    values = {
        "name": name,
        "default_country": default_country,
        "timezone": timezone,
        "default_language": default_language,
    }
    try:
        do_update_workspace(
            ctx.session,
            ctx.actor,
            name=name,
            default_country=default_country.strip() or None,
            timezone=timezone,
            default_language=default_language,
        )
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        return _general(ctx, values, _errors(ctx, exc))
    return ctx.redirect("/settings/general", flash="settings_saved")


# ----- users --------------------------------------------------------------------------------


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


@router.get("/users")
def users(ctx: UserPage) -> Response:
    _open(ctx, "users")
    return _users(ctx)


@router.post("/users/invite")
def invite(ctx: UserPage, email: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "agent") -> Response:
    _open(ctx, "users")
    try:
        do_invite(ctx.session, ctx.actor, email, role)
    except (ValidationFailed, Conflict, PermissionDenied) as exc:
        ctx.session.rollback()
        errors = field_errors(ctx, exc)
        if "__all__" in errors:
            errors = {"email": errors["__all__"]}
        return _users(ctx, {"email": email, "role": role}, errors, status_code=422)
    return ctx.redirect("/settings/users", flash="invitation_sent")


@router.post("/users/{user_id}/role")
def change_role(ctx: UserPage, user_id: int, role: Annotated[str, Form()] = "") -> Response:
    _open(ctx, "users")
    try:
        do_change_role(ctx.session, ctx.actor, user_id, role)
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        raise ValidationFailed(ctx.fmt.gettext(exc.message)) from exc
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/users/{user_id}/deactivate")
def deactivate(ctx: UserPage, user_id: int) -> Response:
    _open(ctx, "users")
    do_deactivate_member(ctx.session, ctx.actor, user_id)
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/users/{user_id}/reactivate")
def reactivate(ctx: UserPage, user_id: int) -> Response:
    _open(ctx, "users")
    do_reactivate_member(ctx.session, ctx.actor, user_id)
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/invitations/{invitation_id}/revoke")
def revoke_invitation(ctx: UserPage, invitation_id: int) -> Response:
    _open(ctx, "users")
    do_revoke_invitation(ctx.session, ctx.actor, invitation_id)
    return ctx.redirect("/settings/users", flash="invitation_revoked")


# ----- teams --------------------------------------------------------------------------------


def _teams(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    people = {m.user.id: (m.user.full_name or m.user.email) for m in list_members(ctx.session, ctx.actor) if m.active}
    context = {
        "teams": list_teams(ctx.session, ctx.actor),
        "people": people,
        "typed": typed or {},
        "errors": errors or {},
    }
    return _render(ctx, "teams", "teams.html", context, status_code=422 if errors else 200)


@router.get("/teams")
def teams(ctx: UserPage) -> Response:
    _open(ctx, "teams")
    return _teams(ctx)


@router.post("/teams")
def create_team(ctx: UserPage, name: Annotated[str, Form()] = "") -> Response:
    _open(ctx, "teams")
    try:
        do_create_team(ctx.session, ctx.actor, name)
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        return _teams(ctx, typed={"new": name}, errors={"new": next(iter(_errors(ctx, exc).values()))})
    return ctx.redirect("/settings/teams", flash="team_saved")


@router.post("/teams/{team_id}/rename")
def rename_team(ctx: UserPage, team_id: int, name: Annotated[str, Form()] = "") -> Response:
    _open(ctx, "teams")
    try:
        do_rename_team(ctx.session, ctx.actor, team_id, name)
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        key = f"team-{team_id}"
        return _teams(ctx, typed={key: name}, errors={key: next(iter(_errors(ctx, exc).values()))})
    return ctx.redirect("/settings/teams", flash="team_saved")


@router.post("/teams/{team_id}/members")
def team_members(ctx: UserPage, team_id: int, members: Annotated[list[int] | None, Form()] = None) -> Response:
    _open(ctx, "teams")
    do_set_team_members(ctx.session, ctx.actor, team_id, list(members or []))
    return ctx.redirect("/settings/teams", flash="team_saved")


@router.post("/teams/{team_id}/delete")
def delete_team(ctx: UserPage, team_id: int) -> Response:
    _open(ctx, "teams")
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


def _fields(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    context = {
        "fields": contacts_repo.custom_fields(ctx.session, ctx.actor.workspace_id),
        "types": FIELD_TYPE_LABELS,
        "typed": typed or {"key": "", "label": "", "type": "text", "options": ""},
        "errors": errors or {},
    }
    return _render(ctx, "fields", "fields.html", context, status_code=422 if errors else 200)


@router.get("/fields")
def fields(ctx: UserPage) -> Response:
    _open(ctx, "fields")
    return _fields(ctx)


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
    _open(ctx, "fields")
    typed = {"key": key, "label": label, "type": type, "options": options}
    try:
        if type not in FIELD_TYPE_LABELS:
            raise ValidationFailed.field("type", "must be one of the options")
        chosen = FieldType(type)
        do_create_custom_field(
            ctx.session,
            ctx.actor,
            key.strip(),
            label,
            chosen,
            _options(options) if chosen == FieldType.LIST else None,
        )
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        errors = field_errors(ctx, exc)
        errors = {("options" if k.startswith("options") else k): v for k, v in errors.items()}
        if isinstance(exc, Conflict):
            errors = {"key": ctx._("A field with this key already exists.")}
        return _fields(ctx, typed=typed, errors=errors)
    return ctx.redirect("/settings/fields", flash="field_saved")


@router.post("/fields/{key}/rename")
def rename_field(ctx: UserPage, key: str, label: Annotated[str, Form()] = "") -> Response:
    _open(ctx, "fields")
    definition = access_custom_field(ctx.session, ctx.actor, key)
    try:
        do_update_custom_field(ctx.session, ctx.actor, definition, label=label)
    except ValidationFailed as exc:
        ctx.session.rollback()
        message = next(iter(field_errors(ctx, exc).values()))
        return _fields(ctx, errors={f"label-{key}": message}, typed={f"label-{key}": label})
    return ctx.redirect("/settings/fields", flash="field_saved")


@router.post("/fields/{key}/move")
def move_field(ctx: UserPage, key: str, direction: Annotated[str, Form()] = "up") -> Response:
    _open(ctx, "fields")
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
    _open(ctx, "fields")
    definition = access_custom_field(ctx.session, ctx.actor, key)
    context = {"field": definition, "used_by": segments_using_field(ctx, key)}
    return _render(ctx, "fields", "field_delete.html", context)


@router.post("/fields/{key}/delete")
def delete_field(ctx: UserPage, key: str) -> Response:
    _open(ctx, "fields")
    definition = access_custom_field(ctx.session, ctx.actor, key)
    do_delete_custom_field(ctx.session, ctx.actor, definition)
    return ctx.redirect("/settings/fields", flash="field_deleted")


# ----- tags ---------------------------------------------------------------------------------


def _tags(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    context = {
        "tags": contacts_repo.tags_with_usage(ctx.session, ctx.actor.workspace_id),
        "typed": typed or {},
        "errors": errors or {},
    }
    return _render(ctx, "tags", "tags.html", context, status_code=422 if errors else 200)


@router.get("/tags")
def tags(ctx: UserPage) -> Response:
    _open(ctx, "tags")
    return _tags(ctx)


@router.post("/tags/{tag_id}/rename")
def rename_tag(ctx: UserPage, tag_id: int, name: Annotated[str, Form()] = "") -> Response:
    _open(ctx, "tags")
    tag = access_tag(ctx.session, ctx.actor, tag_id)
    try:
        do_rename_tag(ctx.session, ctx.actor, tag, name)
    except (ValidationFailed, Conflict) as exc:
        ctx.session.rollback()
        message = ctx._("Another tag already has this name.") if isinstance(exc, Conflict) else None
        message = message or next(iter(field_errors(ctx, exc).values()))
        return _tags(ctx, typed={str(tag_id): name}, errors={str(tag_id): message})
    return ctx.redirect("/settings/tags", flash="tag_saved")


@router.post("/tags/{tag_id}/delete")
def delete_tag(ctx: UserPage, tag_id: int) -> Response:
    _open(ctx, "tags")
    do_delete_tag(ctx.session, ctx.actor, access_tag(ctx.session, ctx.actor, tag_id))
    return ctx.redirect("/settings/tags", flash="tag_deleted")


# ----- API tokens ---------------------------------------------------------------------------


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


@router.get("/tokens")
def tokens(ctx: UserPage) -> Response:
    _open(ctx, "tokens")
    return _tokens(ctx)


@router.post("/tokens")
def create_token(ctx: UserPage, name: Annotated[str, Form()] = "") -> Response:
    _open(ctx, "tokens")
    try:
        issued = do_create_api_token_for(ctx.session, ctx.actor, name)
    except ValidationFailed as exc:
        ctx.session.rollback()
        return _tokens(ctx, typed=name, errors=field_errors(ctx, exc))
    # The secret is shown in this response only; it is stored as an HMAC and cannot be shown again.
    response = _tokens(ctx, secret=issued.secret)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/tokens/{token_id}/revoke")
def revoke_token(ctx: UserPage, token_id: int) -> Response:
    _open(ctx, "tokens")
    do_revoke_api_token_for(ctx.session, ctx.actor, token_id)
    return ctx.redirect("/settings/tokens", flash="token_revoked")
