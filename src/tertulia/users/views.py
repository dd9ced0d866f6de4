"""Pages of people: sign in/out, the language switch, invitations, password reset and the profile."""

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.responses import RedirectResponse, Response

from tertulia.kit.errors import Conflict, DomainError, RateLimited, Unauthorized, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text
from tertulia.users.devices import DEVICE_COOKIE, KNOWN_DEVICE_DAYS, known_device_for, remember_account
from tertulia.users.invitations import INVITATION_PATH, do_accept_invitation, find_invitation
from tertulia.users.models import ActivityStatus
from tertulia.users.passwords import (
    PASSWORD_RESET_PATH,
    do_change_password,
    do_request_password_reset,
    do_reset_password,
    find_password_reset,
)
from tertulia.users.service import do_set_activity_status, do_set_notification_preferences, do_update_profile
from tertulia.users.sessions import SESSION_COOKIE, do_sign_in, do_sign_out
from tertulia.web import i18n
from tertulia.web.context import LANGUAGE_COOKIE, PublicPage, UserPage, WebContext, safe_next, set_cookie
from tertulia.web.forms import COMMON_TIMEZONES, field_errors

router = APIRouter(include_in_schema=False, route_class=CheckedInputRoute)

STATUS_LABELS: dict[str, str] = {
    "online": i18n.lazy("Online"),
    "away": i18n.lazy("Away"),
    "busy": i18n.lazy("Busy"),
    "offline": i18n.lazy("Offline"),
}

# ----- sign in / out ------------------------------------------------------------------------


def _known_device(ctx: WebContext, email: str) -> str | None:
    return known_device_for(ctx.request.cookies.get(DEVICE_COOKIE), email)


def _remember_device(ctx: WebContext, response: Response, email: str) -> None:
    """After a successful sign-in: this browser is a known device of the account from now on."""
    value = remember_account(ctx.request.cookies.get(DEVICE_COOKIE), email)
    set_cookie(ctx.request, response, DEVICE_COOKIE, value, max_age=KNOWN_DEVICE_DAYS * 86400)


def _wait_message(ctx: WebContext, seconds: int) -> str:
    if seconds < 60:
        return ctx.fmt.ngettext(
            "Too many failed attempts. Try again in %(num)d second.",
            "Too many failed attempts. Try again in %(num)d seconds.",
            seconds,
        ) % {"num": seconds}
    minutes = (seconds + 59) // 60
    return ctx.fmt.ngettext(
        "Too many failed attempts. Try again in %(num)d minute.",
        "Too many failed attempts. Try again in %(num)d minutes.",
        minutes,
    ) % {"num": minutes}


@router.get("/login")
def login_form(ctx: PublicPage, next: str | None = None) -> Response:
    if ctx.current is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return ctx.render("users/login.html", {"next": safe_next(next), "email": "", "error": None})


@router.post("/login")
def login(
    ctx: PublicPage,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/contacts",
) -> Response:
    client_ip = ctx.request.client.host if ctx.request.client else None
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        context = {"next": safe_next(next), "email": email, "error": None, "errors": field_errors(ctx, exc)}
        return ctx.render("users/login.html", context, status_code=422)
    try:
        signed_in = do_sign_in(ctx.session, email, password, client_ip=client_ip, device_id=_known_device(ctx, email))
    except RateLimited as exc:
        error = _wait_message(ctx, max(1, exc.retry_after))
        return ctx.render(
            "users/login.html", {"next": safe_next(next), "email": email, "error": error}, status_code=429
        )
    except Unauthorized as exc:
        message = ctx._("Wrong email or password.")
        if exc.code == "no_workspace":
            message = ctx._("This account has no active workspace.")
        return ctx.render(
            "users/login.html", {"next": safe_next(next), "email": email, "error": message}, status_code=401
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    days = ctx.request.app.state.settings.session_days
    set_cookie(ctx.request, response, SESSION_COOKIE, signed_in.token, max_age=days * 86400)
    _remember_device(ctx, response, signed_in.user.email)
    return response


@router.post("/logout")
def logout(ctx: UserPage) -> Response:
    do_sign_out(ctx.session, ctx.request.cookies.get(SESSION_COOKIE))
    response = ctx.redirect("/login", flash="signed_out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
def switch_language(
    ctx: PublicPage,
    language: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return ctx.render("users/language.html", {"errors": field_errors(ctx, exc)}, status_code=422)
    if language not in i18n.LANGUAGES:
        raise ValidationFailed.field("language", "unsupported language")
    if ctx.current is not None:
        user = ctx.user
        do_update_profile(
            ctx.session,
            user,
            first_name=user.first_name,
            last_name=user.last_name,
            language=language,
            timezone=user.timezone,
            avatar_url=user.avatar_url,
        )
    response = ctx.redirect(safe_next(next))
    set_cookie(ctx.request, response, LANGUAGE_COOKIE, language, max_age=365 * 86400)
    return response


# ----- password reset -----------------------------------------------------------------------


def _private(response: Response) -> Response:
    """For pages whose URL carries a one-time secret (reset and invitation links): no browser cache,
    history snapshot or proxy may keep a copy."""
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/forgot-password")
def forgot_form(ctx: PublicPage) -> Response:
    return ctx.render("users/forgot.html", {"email": "", "errors": {}})


@router.post("/forgot-password")
def forgot(ctx: PublicPage, email: Annotated[str, Form()] = "") -> Response:
    try:
        check_form_text(ctx.request)
        do_request_password_reset(ctx.session, email)
    except ValidationFailed as exc:
        return ctx.render("users/forgot.html", {"email": email, "errors": field_errors(ctx, exc)}, status_code=422)
    except RateLimited:
        pass  # Same answer either way: the page never tells whether an account exists.
    return ctx.redirect("/login", flash="reset_sent")


@router.get(PASSWORD_RESET_PATH + "/{token}")
def reset_form(ctx: PublicPage, token: str) -> Response:
    if find_password_reset(ctx.session, token) is None:
        return _private(ctx.render("users/link_invalid.html", status_code=404))
    return _private(ctx.render("users/reset.html", {"token": token, "errors": {}}))


@router.post(PASSWORD_RESET_PATH + "/{token}")
def reset(ctx: PublicPage, token: str, password: Annotated[str, Form()] = "") -> Response:
    try:
        check_form_text(ctx.request)
        do_reset_password(ctx.session, token, password)
    except ValidationFailed as exc:
        errors = field_errors(ctx, exc)
        if "new_password" in errors:
            errors["password"] = errors.pop("new_password")
        return _private(ctx.render("users/reset.html", {"token": token, "errors": errors}, status_code=422))
    except DomainError:
        return _private(ctx.render("users/link_invalid.html", status_code=404))
    return _private(ctx.redirect("/login", flash="password_reset"))


# ----- invitations --------------------------------------------------------------------------


@router.get(INVITATION_PATH + "/{token}")
def invitation_form(ctx: PublicPage, token: str) -> Response:
    invitation = find_invitation(ctx.session, token)
    if invitation is None:
        return _private(ctx.render("users/link_invalid.html", status_code=404))
    values = {"first_name": "", "last_name": ""}
    context = {"token": token, "invitation": invitation, "values": values, "errors": {}}
    return _private(ctx.render("users/invitation.html", context))


@router.post(INVITATION_PATH + "/{token}")
def accept_invitation(
    ctx: PublicPage,
    token: str,
    first_name: Annotated[str, Form()] = "",
    last_name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    invitation = find_invitation(ctx.session, token)
    if invitation is None:
        return _private(ctx.render("users/link_invalid.html", status_code=404))
    device_id = _known_device(ctx, invitation.email)
    try:
        check_form_text(ctx.request)
        user = do_accept_invitation(
            ctx.session,
            token,
            password=password,
            first_name=first_name,
            last_name=last_name,
            device_id=device_id,
        )
    except (ValidationFailed, Conflict, RateLimited) as exc:
        # Not rolled back: a wrong password for an existing account counts towards throttling.
        values = {"first_name": first_name, "last_name": last_name}
        context = {"token": token, "invitation": invitation, "values": values, "errors": field_errors(ctx, exc)}
        return _private(ctx.render("users/invitation.html", context, status_code=422))
    client_ip = ctx.request.client.host if ctx.request.client else None
    signed_in = do_sign_in(
        ctx.session,
        user.email,
        password,
        client_ip=client_ip,
        workspace_id=invitation.workspace_id,
        device_id=device_id,
    )
    response = ctx.redirect("/contacts", flash="welcome")
    days = ctx.request.app.state.settings.session_days
    set_cookie(ctx.request, response, SESSION_COOKIE, signed_in.token, max_age=days * 86400)
    _remember_device(ctx, response, user.email)
    return _private(response)


# ----- profile ------------------------------------------------------------------------------


def _profile_values(ctx: WebContext) -> dict[str, str]:
    user = ctx.user
    return {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "avatar_url": user.avatar_url or "",
        "language": user.language or "",
        "timezone": user.timezone or "",
        "email_signature": user.email_signature or "",
    }


def _render_profile(
    ctx: WebContext,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    password_errors: dict[str, str] | None = None,
    status_errors: dict[str, str] | None = None,
    notification_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    current_zone = ctx.user.timezone
    zones = list(COMMON_TIMEZONES)
    if current_zone and current_zone not in zones:
        zones.insert(0, current_zone)
    context = {
        "values": values or _profile_values(ctx),
        "errors": errors or {},
        "password_errors": password_errors or {},
        "status_errors": status_errors or {},
        "notification_errors": notification_errors or {},
        "timezones": zones,
        "statuses": STATUS_LABELS,
    }
    return ctx.render("users/profile.html", context, status_code=status_code, active="profile")


@router.get("/profile")
def profile(ctx: UserPage) -> Response:
    return _render_profile(ctx)


@router.post("/profile")
def save_profile(
    ctx: UserPage,
    first_name: Annotated[str, Form()] = "",
    last_name: Annotated[str, Form()] = "",
    avatar_url: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    email_signature: Annotated[str, Form()] = "",
) -> Response:
    values = {
        "first_name": first_name,
        "last_name": last_name,
        "avatar_url": avatar_url,
        "language": language,
        "timezone": timezone,
        "email_signature": email_signature,
    }
    try:
        check_form_text(ctx.request)
        do_update_profile(
            ctx.session,
            ctx.user,
            first_name=first_name,
            last_name=last_name,
            language=language or None,
            timezone=timezone or None,
            avatar_url=avatar_url or None,
            email_signature=email_signature,
        )
    except ValidationFailed as exc:
        ctx.session.rollback()
        return _render_profile(ctx, values=values, errors=field_errors(ctx, exc), status_code=422)
    return ctx.redirect("/profile", flash="profile_saved")


@router.post("/profile/status")
def save_status(ctx: UserPage, status: Annotated[str, Form()]) -> Response:
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _render_profile(ctx, status_errors=field_errors(ctx, exc), status_code=422)
    if status not in STATUS_LABELS:
        raise ValidationFailed.field("status", "unknown status")
    do_set_activity_status(ctx.session, ctx.user, ActivityStatus(status))
    return ctx.redirect(safe_next(ctx.current_page or "/profile"), flash="status_saved")


@router.post("/profile/notifications")
def save_notifications(
    ctx: UserPage, desktop: Annotated[str, Form()] = "", sound: Annotated[str, Form()] = ""
) -> Response:
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _render_profile(ctx, notification_errors=field_errors(ctx, exc), status_code=422)
    # Unchecked boxes are not sent at all: absent means off.
    do_set_notification_preferences(ctx.session, ctx.user, desktop=bool(desktop), sound=bool(sound))
    return ctx.redirect("/profile", flash="notifications_saved")


@router.post("/profile/password")
def change_password(
    ctx: UserPage,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
) -> Response:
    try:
        check_form_text(ctx.request)
        do_change_password(
            ctx.session, ctx.user, current_password, new_password, device_id=_known_device(ctx, ctx.user.email)
        )
    except (ValidationFailed, RateLimited) as exc:
        # Not rolled back: a wrong current password counts towards sign-in throttling.
        errors = field_errors(ctx, exc)
        if "__all__" in errors:
            errors = {"current_password": errors["__all__"]}
        return _render_profile(ctx, password_errors=errors, status_code=422)
    return ctx.redirect("/login", flash="password_changed")
