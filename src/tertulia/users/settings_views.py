"""Settings > Users (members and invitations), Teams and API tokens. Each page checks its own
permission (docs/permissions.md); the rules live in users/service.py, invitations.py and teams.py.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.responses import Response

from tertulia.kit.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.types import ID
from tertulia.users.invitations import do_invite, do_revoke_invitation, list_invitations
from tertulia.users.models import Role, TokenScope
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
from tertulia.web.forms import errors_beside, field_errors, first_message, keep_one, submit
from tertulia.web.sections import Section, open_section, render_section, section_page

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

USERS = Section("users", i18n.lazy("Users"), Permission.MANAGE_USERS)
TEAMS = Section("teams", i18n.lazy("Teams"), Permission.MANAGE_TEAMS)
TOKENS = Section("tokens", i18n.lazy("API tokens"), Permission.MANAGE_API_TOKENS)

ROLE_LABELS: dict[str, str] = {
    Role.OWNER.value: i18n.lazy("Owner"),
    Role.MANAGER.value: i18n.lazy("Manager"),
    Role.AGENT.value: i18n.lazy("Agent"),
}


def _render(
    ctx: WebContext, section: Section, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    return render_section(ctx, section, f"users/settings/{template}", context, status_code=status_code)


# ----- users --------------------------------------------------------------------------------


@section_page(router, "/users", USERS)
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
    return _render(ctx, USERS, "users.html", context, status_code=status_code)


@router.post("/users/invite")
def invite(ctx: UserPage, email: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "agent") -> Response:
    open_section(ctx, USERS)

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
def change_role(ctx: UserPage, user_id: ID, role: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, USERS)

    def refuse(exc: DomainError) -> Response:
        # The role is a select in a table row: the refusal is shown beside that row's select.
        message = ctx.fmt.gettext(exc.message) if not isinstance(exc, ValidationFailed) else None
        errors = {f"role-{user_id}": message or first_message(field_errors(ctx, exc))}
        return _users(ctx, errors=errors, status_code=422)

    return submit(
        ctx,
        lambda: do_change_role(ctx.session, ctx.actor, user_id, role),
        again=refuse,
        redirect="/settings/users",
        flash="settings_saved",
    )


@router.post("/users/{user_id}/deactivate")
def deactivate(ctx: UserPage, user_id: ID) -> Response:
    open_section(ctx, USERS)
    do_deactivate_member(ctx.session, ctx.actor, user_id)
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/users/{user_id}/reactivate")
def reactivate(ctx: UserPage, user_id: ID) -> Response:
    open_section(ctx, USERS)
    do_reactivate_member(ctx.session, ctx.actor, user_id)
    return ctx.redirect("/settings/users", flash="settings_saved")


@router.post("/invitations/{invitation_id}/revoke")
def revoke_invitation(ctx: UserPage, invitation_id: ID) -> Response:
    open_section(ctx, USERS)
    do_revoke_invitation(ctx.session, ctx.actor, invitation_id)
    return ctx.redirect("/settings/users", flash="invitation_revoked")


# ----- teams --------------------------------------------------------------------------------


@section_page(router, "/teams", TEAMS)
def _teams(ctx: WebContext, *, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    people = {m.user.id: (m.user.full_name or m.user.email) for m in list_members(ctx.session, ctx.actor) if m.active}
    context = {
        "teams": list_teams(ctx.session, ctx.actor),
        "people": people,
        "typed": typed or {},
        "errors": errors or {},
    }
    return _render(ctx, TEAMS, "teams.html", context, status_code=422 if errors else 200)


@router.post("/teams")
def create_team(ctx: UserPage, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, TEAMS)
    return submit(
        ctx,
        lambda: do_create_team(ctx.session, ctx.actor, name),
        again=keep_one(partial(_teams, ctx), "new", name, lambda exc: first_message(errors_beside(ctx, exc))),
        redirect="/settings/teams",
        flash="team_saved",
    )


@router.post("/teams/{team_id}/rename")
def rename_team(ctx: UserPage, team_id: ID, name: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, TEAMS)
    return submit(
        ctx,
        lambda: do_rename_team(ctx.session, ctx.actor, team_id, name),
        again=keep_one(
            partial(_teams, ctx), f"team-{team_id}", name, lambda exc: first_message(errors_beside(ctx, exc))
        ),
        redirect="/settings/teams",
        flash="team_saved",
    )


@router.post("/teams/{team_id}/members")
def team_members(ctx: UserPage, team_id: ID, members: Annotated[list[ID] | None, Form()] = None) -> Response:
    open_section(ctx, TEAMS)
    do_set_team_members(ctx.session, ctx.actor, team_id, list(members or []))
    return ctx.redirect("/settings/teams", flash="team_saved")


@router.post("/teams/{team_id}/delete")
def delete_team(ctx: UserPage, team_id: ID) -> Response:
    open_section(ctx, TEAMS)
    do_delete_team(ctx.session, ctx.actor, team_id)
    return ctx.redirect("/settings/teams", flash="team_deleted")


# ----- API tokens ---------------------------------------------------------------------------


TOKEN_SCOPE_LABELS = (
    (TokenScope.ADMIN, i18n.lazy("Everything (admin)"), i18n.lazy("Every resource a token may use, read and write.")),
    (TokenScope.READ_ONLY, i18n.lazy("Read only"), i18n.lazy("Read every resource; change nothing.")),
    (TokenScope.CONTACTS, i18n.lazy("Contacts"), i18n.lazy("Contacts, custom fields, tags and segments.")),
    (TokenScope.MESSAGES, i18n.lazy("Messages"), i18n.lazy("Conversations, messages, files, snippets.")),
    (TokenScope.BROADCASTS, i18n.lazy("Broadcasts"), i18n.lazy("Broadcasts, their settings and opt-outs.")),
)


@dataclass
class TypedToken:
    name: str = ""
    scopes: tuple[str, ...] = (TokenScope.ADMIN.value,)
    expires_on: str = ""


def _token_expiry(ctx: WebContext, expires_on: str) -> datetime | None:
    """A token chosen to expire "on" a day works through that day, in the person's time zone."""
    if not expires_on.strip():
        return None
    try:
        day = date.fromisoformat(expires_on.strip())
    except ValueError as exc:
        raise ValidationFailed.field("expires_at", "must be a date (YYYY-MM-DD)") from exc
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ctx.fmt.zone)


@section_page(router, "/tokens", TOKENS)
def _tokens(
    ctx: WebContext, *, secret: str | None = None, typed: TypedToken | None = None, errors: dict[str, str] | None = None
) -> Response:
    if errors and "expires_at" in errors:
        errors["expires_on"] = errors.pop("expires_at")
    context = {
        "tokens": [t for t in list_api_tokens_for(ctx.session, ctx.actor) if t.revoked_at is None],
        "secret": secret,
        "typed": typed or TypedToken(),
        "scope_options": TOKEN_SCOPE_LABELS,
        "errors": errors or {},
    }
    return _render(ctx, TOKENS, "tokens.html", context, status_code=422 if errors else 200)


@router.post("/tokens")
def create_token(
    ctx: UserPage,
    name: Annotated[str, Form()] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_on: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, TOKENS)
    typed = TypedToken(name, tuple(scopes or ()), expires_on)

    def issued(token: IssuedToken) -> Response:
        # The secret is shown in this response only; it is stored as an HMAC and cannot be shown again.
        response = _tokens(ctx, secret=token.secret)
        response.headers["Cache-Control"] = "no-store"
        return response

    return submit(
        ctx,
        lambda: do_create_api_token_for(
            ctx.session, ctx.actor, name, scopes=typed.scopes, expires_at=_token_expiry(ctx, expires_on)
        ),
        again=lambda exc: _tokens(ctx, typed=typed, errors=field_errors(ctx, exc)),
        done=issued,
        catch=(ValidationFailed,),
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(ctx: UserPage, token_id: ID) -> Response:
    open_section(ctx, TOKENS)
    do_revoke_api_token_for(ctx.session, ctx.actor, token_id)
    return ctx.redirect("/settings/tokens", flash="token_revoked")
