"""Who is asking a page, in which language, and whether their form submission is genuine (CSRF).

CSRF: a signed-in browser must echo its session's `csrf_token` (hidden form field `csrf_token` or
the `X-CSRF-Token` header that `app.js` adds to every htmx request). Before sign-in, forms use a
signed double-submit token: a random HttpOnly cookie, and in the form a token signed with the
installation secret over that cookie's value and the time it was issued (valid ANON_CSRF_MAX_AGE).
Someone who can plant a cookie for the app's host cannot make up a form token to go with it; behind
https the cookie is `__Host-` prefixed, which browsers accept only from the app's own host, so it
cannot be planted at all. Anything else is a 403.
"""

import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tertulia.kit.http import DbSession
from tertulia.kit.security import new_token, same_secret, sign, signature_matches
from tertulia.users.models import User
from tertulia.users.permissions import Actor, Permission
from tertulia.users.sessions import SESSION_COOKIE, CurrentSession, resolve_session
from tertulia.web import i18n
from tertulia.web.templating import render
from tertulia.workspaces.models import Workspace

ANON_CSRF_COOKIE = "tertulia_csrf"
# Behind https: a __Host- cookie is taken only from this very host, Secure and for path /.
SECURE_ANON_CSRF_COOKIE = "__Host-" + ANON_CSRF_COOKIE
ANON_CSRF_PURPOSE = "anonymous-csrf"
# A sign-in page left open longer asks for a reload.
ANON_CSRF_MAX_AGE = 24 * 3600
LANGUAGE_COOKIE = "tertulia_lang"
FLASH_COOKIE = "tertulia_flash"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Flash messages travel as keys, never as text, so a crafted cookie cannot put words on the page.
FLASH_MESSAGES: dict[str, str] = {
    "signed_out": i18n.lazy("You have been signed out."),
    "profile_saved": i18n.lazy("Your profile has been saved."),
    "password_changed": i18n.lazy("Your password has been changed."),
    "status_saved": i18n.lazy("Your status has been updated."),
    "contact_created": i18n.lazy("Contact created."),
    "contacts_deleted": i18n.lazy("The selected contacts were deleted."),
    "bulk_done": i18n.lazy("Done: the selected contacts were updated."),
    "nothing_selected": i18n.lazy("Select at least one contact first."),
    "merged": i18n.lazy("The contacts were merged."),
    "split": i18n.lazy("The identity now belongs to a new contact."),
    "contact_blocked": i18n.lazy("The contact is blocked: its messages no longer reach the inbox."),
    "contact_unblocked": i18n.lazy("The contact is unblocked: its new messages reach the inbox again."),
    "sessions_ended": i18n.lazy("The contact's web-chat sessions were ended."),
    "suggestion_dismissed": i18n.lazy("The suggestion was dismissed; these two contacts will not be suggested again."),
    "reset_sent": i18n.lazy("If an account exists for that email, we have sent a link to reset the password."),
    "password_reset": i18n.lazy("Your password has been reset. Sign in with the new one."),
    "welcome": i18n.lazy("Welcome to Tertulia!"),
    "settings_saved": i18n.lazy("Your changes have been saved."),
    "export_started": i18n.lazy("The export has started. It appears below; download it when it is ready."),
    "channel_connected": i18n.lazy("The channel is connected."),
    "channel_disconnected": i18n.lazy("The channel is disconnected. Its conversations are kept."),
    "templates_sync_queued": i18n.lazy("Reading the templates from WhatsApp. Reload the page in a moment."),
    "invitation_sent": i18n.lazy("The invitation has been sent."),
    "invitation_revoked": i18n.lazy("The invitation has been revoked."),
    "team_saved": i18n.lazy("The team has been saved."),
    "team_deleted": i18n.lazy("The team has been deleted."),
    "field_saved": i18n.lazy("The custom field has been saved."),
    "field_deleted": i18n.lazy("The custom field has been deleted."),
    "tag_saved": i18n.lazy("The tag has been renamed."),
    "tag_deleted": i18n.lazy("The tag has been deleted."),
    "token_revoked": i18n.lazy("The API token has been revoked."),
    "segment_saved": i18n.lazy("The segment has been saved."),
    "segment_deleted": i18n.lazy("The segment has been deleted."),
    "snippet_saved": i18n.lazy("The snippet has been saved."),
    "snippet_deleted": i18n.lazy("The snippet has been deleted."),
    "category_saved": i18n.lazy("The closing category has been saved."),
    "category_deleted": i18n.lazy("The closing category has been deleted."),
    "file_uploaded": i18n.lazy("The file has been uploaded."),
    "file_deleted": i18n.lazy("The file has been deleted."),
    "notifications_saved": i18n.lazy("Your notification settings have been saved."),
    "webhook_deleted": i18n.lazy("The webhook endpoint has been deleted."),
    "webhook_test_queued": i18n.lazy("A test event is on its way. Reload the page to see how it went."),
    "webhook_redeliver_queued": i18n.lazy("The delivery will be sent again. Reload the page to see how it went."),
}


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRejected(Exception):
    pass


@dataclass
class WebContext:
    request: Request
    session: Session
    current: CurrentSession | None
    workspace: Workspace | None
    fmt: i18n.Formatter
    anon_csrf: str  # the cookie's random value
    new_anon_csrf: bool
    anon_form_token: str  # what forms carry before sign-in, signed over anon_csrf
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def user(self) -> User:
        assert self.current is not None
        return self.current.user

    @property
    def actor(self) -> Actor:
        assert self.current is not None
        return self.current.actor

    @property
    def csrf_token(self) -> str:
        return self.current.web_session.csrf_token if self.current else self.anon_form_token

    def can(self, permission: str) -> bool:
        return self.current is not None and self.actor.can(Permission(permission))

    def can_open_settings(self) -> bool:
        """Whether any settings section this app installed (web.sections.install_sections) is open to them."""
        sections = getattr(self.request.app.state, "settings_sections", ())
        return self.current is not None and any(self.actor.can(section.permission) for section in sections)

    def _(self, message: str, **params: Any) -> str:
        text = self.fmt.gettext(message)
        return text % params if params else text

    @property
    def form(self) -> dict[str, str]:
        """The submitted form's text fields, for forms whose field names are data (one per field)."""
        form = getattr(self.request.state, "form", None)
        if form is None:
            return {}
        return {key: value for key, value in form.multi_items() if isinstance(value, str)}

    @property
    def current_page(self) -> str | None:
        """For htmx requests: the path (and query) of the page the person is looking at."""
        current = self.request.headers.get("HX-Current-URL")
        if not current:
            return None
        parts = urlsplit(current)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"

    def render(
        self,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status_code: int = 200,
        active: str = "",
    ) -> HTMLResponse:
        values = {"ctx": self, "active": active, "flashes": self.flashes, "request": self.request}
        values.update(context or {})
        response = render(template, values, formatter=self.fmt, status_code=status_code)
        self.finish(response)
        return response

    def redirect(self, url: str, *, flash: str | None = None) -> Response:
        """After a successful POST: 303 for plain forms, HX-Redirect for htmx."""
        response: Response
        if self.is_htmx:
            response = Response(status_code=204, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        if flash:
            response.set_cookie(FLASH_COOKIE, flash, max_age=60, httponly=True, samesite="lax", path="/")
        self.finish(response)
        return response

    def finish(self, response: Response) -> None:
        if self.new_anon_csrf:
            set_cookie(self.request, response, anon_csrf_cookie(self.request), self.anon_csrf, max_age=None)
        if self.flashes and self.request.cookies.get(FLASH_COOKIE):
            response.delete_cookie(FLASH_COOKIE, path="/")


def secure_cookies(request: Request) -> bool:
    return str(request.app.state.settings.base_url).startswith("https://")


def anon_csrf_cookie(request: Request) -> str:
    return SECURE_ANON_CSRF_COOKIE if secure_cookies(request) else ANON_CSRF_COOKIE


def anonymous_form_token(nonce: str) -> str:
    issued = str(int(time.time()))
    return f"{issued}.{sign(ANON_CSRF_PURPOSE, f'{nonce}.{issued}')}"


def anonymous_form_token_matches(nonce: str, token: str) -> bool:
    issued, _, signature = token.partition(".")
    if not issued.isdigit() or not 0 <= time.time() - int(issued) <= ANON_CSRF_MAX_AGE:
        return False
    return signature_matches(ANON_CSRF_PURPOSE, f"{nonce}.{issued}", signature)


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )


async def submitted_csrf(request: Request) -> str | None:
    """The token the client sent back: the htmx header, else the form field."""
    if request.method in SAFE_METHODS:
        return None
    field: str | None = None
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        request.state.form = form
        value = form.get("csrf_token")
        field = value if isinstance(value, str) else None
    return request.headers.get("X-CSRF-Token") or field


def _flashes(request: Request, fmt: i18n.Formatter) -> list[tuple[str, str]]:
    key = request.cookies.get(FLASH_COOKIE)
    if not key or key not in FLASH_MESSAGES:
        return []
    kind = "success"
    return [(kind, fmt.gettext(FLASH_MESSAGES[key]))]


def web_context(
    request: Request,
    session: DbSession,
    submitted: Annotated[str | None, Depends(submitted_csrf)],
) -> WebContext:
    current = resolve_session(session, request.cookies.get(SESSION_COOKIE))
    workspace = session.get(Workspace, current.membership.workspace_id) if current else None
    if current is not None:
        # An explicit choice made on the sign-in page (the cookie) counts until the profile says otherwise.
        language = i18n.negotiate(
            current.user.language or request.cookies.get(LANGUAGE_COOKIE),
            request.headers.get("accept-language"),
            workspace.default_language if workspace else None,
        )
        zone = i18n.safe_zone(current.user.timezone or (workspace.timezone if workspace else None))
    else:
        language = i18n.negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"), None)
        zone = i18n.safe_zone(None)
    fmt = i18n.Formatter(language, zone)
    i18n.activate(fmt)
    anon = request.cookies.get(anon_csrf_cookie(request))
    nonce = anon or new_token(nbytes=24)
    ctx = WebContext(
        request=request,
        session=session,
        current=current,
        workspace=workspace,
        fmt=fmt,
        anon_csrf=nonce,
        new_anon_csrf=not anon,
        anon_form_token=anonymous_form_token(nonce),
    )
    ctx.flashes = _flashes(request, fmt)
    request.state.submitted_csrf = submitted
    return ctx


def _check_csrf(ctx: WebContext) -> None:
    if ctx.request.method in SAFE_METHODS:
        return
    submitted = ctx.request.state.submitted_csrf
    if not submitted:
        raise CsrfRejected
    if ctx.current is not None:
        if not same_secret(str(submitted), ctx.current.web_session.csrf_token):
            raise CsrfRejected
        return
    nonce = ctx.request.cookies.get(anon_csrf_cookie(ctx.request))
    if not nonce or not anonymous_form_token_matches(nonce, str(submitted)):
        raise CsrfRejected


def public_page(ctx: Annotated[WebContext, Depends(web_context)]) -> WebContext:
    _check_csrf(ctx)
    return ctx


def user_page(ctx: Annotated[WebContext, Depends(web_context)]) -> WebContext:
    """A page for signed-in people only; others go to /login and come back afterwards."""
    if ctx.current is None:
        url = ctx.request.url
        target = url.path + (f"?{url.query}" if url.query else "")
        if ctx.request.method not in SAFE_METHODS or ctx.is_htmx:
            target = ctx.current_page or url.path
        raise LoginRequired(target)
    _check_csrf(ctx)
    return ctx


PublicPage = Annotated[WebContext, Depends(public_page)]
UserPage = Annotated[WebContext, Depends(user_page)]


def login_url(next_url: str) -> str:
    return "/login?next=" + quote(next_url, safe="/")


def safe_next(value: str | None) -> str:
    """Only same-site paths: `next=//evil.example` or `https://...` would be an open redirect."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/contacts"
    return value
