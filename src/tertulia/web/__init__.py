"""The agent web app's shell: server-rendered pages (Jinja2 + htmx + Alpine's CSP build), no build step.

The shell is the layout, context, templating, i18n, forms, security headers, flash messages and the
settings layout (`sections`). It imports no domain beyond users' sessions and permissions and the
workspace model: each domain's pages live in that domain, and `app.py` mounts them in one list.
This module adds what every page shares (security headers, static files, error pages) and the
shell's own pages (the home redirect, the modules that are not live yet).
"""

import inspect
import os
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tertulia.kit.errors import DomainError
from tertulia.kit.http import CheckedInputRoute, is_page_request
from tertulia.kit.types import ID_OUT_OF_RANGE
from tertulia.web import i18n
from tertulia.web.context import LANGUAGE_COOKIE, CsrfRejected, LoginRequired, UserPage, login_url
from tertulia.web.security import SecurityHeadersMiddleware
from tertulia.web.templating import STATIC_DIR, render

STATIC_MAX_AGE = 365 * 24 * 3600

shell_router = APIRouter(include_in_schema=False, route_class=CheckedInputRoute)


class CachedStaticFiles(StaticFiles):
    """URLs carry a content hash (templating.static_url), so browsers may keep files for a year."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}, immutable"
        return response


def _error_page(request: Request, status_code: int, message: str | None = None) -> Response:
    """A page for errors that escape a view; it uses no database, so it cannot fail itself."""
    language = i18n.negotiate(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"), None)
    fmt = i18n.Formatter(language, i18n.safe_zone(None))
    titles = {
        400: i18n.lazy("The form could not be read"),
        403: i18n.lazy("You do not have access to this page"),
        404: i18n.lazy("Page not found"),
        422: i18n.lazy("The request was not valid"),
        429: i18n.lazy("Too many requests"),
    }
    title = fmt.gettext(titles.get(status_code, i18n.lazy("Something went wrong")))
    message_text = fmt.gettext(message) if message else ""
    context = {"status_code": status_code, "title": title, "message": message_text, "language": language}
    return render("error.html", context, formatter=fmt, status_code=status_code)


async def _call(handler: Any, request: Request, exc: Exception) -> Any:
    result = handler(request, exc)
    return await result if inspect.isawaitable(result) else result


@shell_router.get("/")
def home(_ctx: UserPage) -> Response:
    return RedirectResponse("/dashboard", status_code=303)


def install_web(app: FastAPI) -> None:
    """Security headers, static files and the error pages; called after the routers are mounted,
    because it wraps the JSON error handlers they rely on."""
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", CachedStaticFiles(directory=STATIC_DIR), name="static")

    json_domain = app.exception_handlers[DomainError]
    json_http = app.exception_handlers[StarletteHTTPException]
    json_validation = app.exception_handlers[RequestValidationError]

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        url = login_url(exc.next_url)
        if request.headers.get("HX-Request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, _exc: CsrfRejected) -> Response:
        return _error_page(
            request, 403, i18n.lazy("The form expired or did not come from this site. Reload the page and try again.")
        )

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Any:
        if is_page_request(request):
            return _error_page(request, exc.status_code, exc.message)
        return await _call(json_domain, request, exc)

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, exc: RequestValidationError) -> Any:
        # A page URL edited by hand (?after=abc): an error page, not JSON. An id no row can have
        # (out of range, or too many digits to parse; in the path, the query or a form field) names
        # nothing: not found.
        if is_page_request(request):
            unknown_id = all(error.get("type") in (ID_OUT_OF_RANGE, "int_parsing_size") for error in exc.errors())
            return _error_page(request, 404 if unknown_id else 422)
        return await _call(json_validation, request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        # 400: a form Starlette could not parse (say, more fields than it accepts).
        if is_page_request(request) and exc.status_code in (400, 403, 404, 405):
            return _error_page(request, exc.status_code)
        return await _call(json_http, request, exc)
