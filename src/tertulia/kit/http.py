"""The HTTP boundary: one error shape, and the per-request unit of work."""

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import anyio
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from tertulia.kit.db import MAX_CONNECTIONS, Database
from tertulia.kit.errors import DomainError, RateLimited, ValidationFailed
from tertulia.kit.logging import mark_logged
from tertulia.kit.text import UNSAFE_TEXT_MESSAGE, check_input_text, has_unsafe_characters

log = structlog.get_logger()
# Leave connections for work a request does outside its own session (token check, after-commit work).
REQUEST_SESSIONS = MAX_CONNECTIONS - 6
_NO_LIMIT = contextlib.nullcontext()


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `validation_failed`, `not_found`.")
    message: str
    details: dict[str, Any] = Field(
        description="For 422s: the field path (`groups[1].conditions[0].value`) to its message."
    )


class ErrorBody(BaseModel):
    """Every error the API answers: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    400: "The body could not be read (malformed JSON or form)",
    401: "No valid credential",
    403: "Not allowed for this credential",
    404: "Not found (or in another workspace)",
    409: "Conflicts with existing data",
    413: "The body is larger than this URL accepts",
    422: "Invalid input; `details` names each field",
    429: "Rate limited; see the Retry-After header",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the one error body."""
    return {status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}


# Declared on every API route (`APIRouter(responses=API_ERRORS)`): any request may meet them.
API_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422, 429)


def validation_details(errors: Any) -> dict[str, str]:
    """Pydantic errors as {"field.path": "message"}, dropping the body/query prefix."""
    details: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        path = ".".join(loc) or "request"
        details.setdefault(path, str(error.get("msg", "invalid")))
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return JSONResponse(exc.as_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc.errors())
        message = "; ".join(f"{k}: {v}" for k, v in details.items())
        return JSONResponse(error_body("validation_failed", message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
            413: "payload_too_large",
        }
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(IntegrityError)
    async def integrity_error(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Reached only when a concurrent request won a race that the service's own check lost.
        log.info("integrity_conflict", error=str(exc.orig))
        return JSONResponse(
            error_body("conflict", "This conflicts with existing data; reload and try again."),
            status_code=409,
        )

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def driver_data_error(request: Request, exc: Exception) -> Response:
        refusal = out_of_range_error() if is_out_of_range(exc) else unsafe_text_error() if is_nul_text(exc) else None
        if refusal is not None:
            # Through the DomainError handler at request time, so pages get the web app's error page.
            handler = request.app.exception_handlers[DomainError]
            result = handler(request, refusal)
            response: Response = await result if inspect.isawaitable(result) else result
            return response
        await anyio.to_thread.run_sync(_log_unexpected, request, exc)
        return _internal_error()

    # Sync on purpose: Starlette runs a sync catch-all handler in its threadpool, so formatting the
    # traceback never holds up the event loop (and every other request of the process).
    @app.exception_handler(Exception)
    def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log_unexpected(request, exc)
        response = _internal_error()
        # Starlette raises the exception again once this is sent, and uvicorn then closes the
        # connection: saying so keeps a client from reusing it for its next request (reset by peer).
        response.headers["Connection"] = "close"
        return response


# SQLSTATE numeric_value_out_of_range: "bigint out of range", "integer out of range".
_OUT_OF_RANGE_SQLSTATE = "22003"


def out_of_range_error() -> ValidationFailed:
    return ValidationFailed.field("request", "a number is out of the range this server accepts")


def unsafe_text_error() -> ValidationFailed:
    return ValidationFailed.field("request", UNSAFE_TEXT_MESSAGE)


def is_nul_text(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL's driver refusing text with NUL: CheckedInputRoute refuses such text
    where it comes in; this is the last resort for a path that still lets some through."""
    original = getattr(exc, "orig", None)
    return original is not None and "cannot contain NUL" in str(original)


def is_out_of_range(exc: BaseException) -> bool:
    """Whether `exc` is the database driver refusing an integer too large for its column or type:
    SQLite's OverflowError (raised as is, or wrapped by SQLAlchemy), PostgreSQL's 22003."""
    original = getattr(exc, "orig", None)
    if isinstance(exc, OverflowError) or isinstance(original, OverflowError):
        return True
    return getattr(original, "sqlstate", None) == _OUT_OF_RANGE_SQLSTATE


def _log_unexpected(request: Request, exc: Exception) -> None:
    log.error("unhandled_error", method=request.method, path=request.url.path, exc_info=exc)
    mark_logged(exc)


def _internal_error() -> JSONResponse:
    return JSONResponse(error_body("internal_error", "Something went wrong."), status_code=500)


# ----- text from outside ----------------------------------------------------------------------


# Paths that are not pages: their errors are JSON (or a socket frame), never a page.
NON_PAGE_PREFIXES = ("/api/", "/healthz", "/static/", "/widget/", "/webhooks/", "/ws")


def is_page_path(path: str) -> bool:
    return not path.startswith(NON_PAGE_PREFIXES)


def is_page_request(request: Request) -> bool:
    return is_page_path(request.url.path)


class CheckedInputRoute(APIRoute):
    """Every route of the app: before the endpoint (and its dependencies) see anything, the path and
    query parameters, a JSON body and a form's field names and file names pass kit.text's one rule
    for NUL and unpaired surrogates, so a 422 names the field instead of a database error deep inside.

    A form's field values are refused up front too, except on pages: there the refusal is kept for
    the page (`check_form_text`), which shows it beside the field with what was typed, as it shows
    any other refusal; a page that never asks has its transaction rolled back and answers the bare
    422 (db_session), so the text is never stored either way.

    The body is parsed here once; FastAPI reuses the parsed body from the request object."""

    # False for routes that read their raw body themselves (provider callbacks, stored as bytes and
    # verified over them): reading it here as a form would consume it.
    checks_body: ClassVar[bool] = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        checks_body = self.checks_body
        takes_body = self.body_field is not None

        async def handler(request: Request) -> Response:
            await check_request_text(request, form=checks_body, json=checks_body and takes_body)
            return await original(request)

        return handler


async def check_request_text(request: Request, *, form: bool, json: bool) -> None:
    check_input_text(dict(request.path_params))
    for key, value in request.query_params.multi_items():
        check_input_text(key, "query")
        check_input_text(value, key)
    content_type = request.headers.get("content-type", "")
    if form and content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        fields = await request.form()
        for key, _field in fields.multi_items():
            check_input_text(key, "form")
        refusals = unsafe_form_fields(fields)
        if refusals and not is_page_request(request):
            raise _refusal(refusals)
        request.state.unsafe_form_text = refusals
    elif json and _is_json(content_type) and await request.body():
        try:
            body = await request.json()
            check_input_text(body)
        except ValueError:
            return  # FastAPI answers malformed JSON with its own 422
        except RecursionError as exc:
            # Arrays or objects nested past the parser's (or this walk's) recursion limit: a
            # request no route takes, refused here before anything else recurses into it.
            raise ValidationFailed.field("request", "nested too deeply") from exc


def unsafe_form_fields(form: FormData) -> dict[str, str]:
    """kit.text's message for every field of `form` whose value (a file's name, for a file) holds
    NUL or an unpaired surrogate."""
    details: dict[str, str] = {}
    for key, field in form.multi_items():
        if has_unsafe_characters(_form_text(field)):
            details.setdefault(key, UNSAFE_TEXT_MESSAGE)
    return details


def check_form_text(request: Request) -> None:
    """For a page handling a form: ValidationFailed (the 422 of kit.text's rule) naming every field
    whose value holds NUL or an unpaired surrogate, raised where the page checks the rest of its input
    so that it shows the message beside the field. Asking is what lets the request's transaction
    commit (db_session)."""
    request.state.form_text_checked = True
    refusals: dict[str, str] = getattr(request.state, "unsafe_form_text", None) or {}
    if refusals:
        raise _refusal(refusals)


def check_form_text_named(request: Request, names: Mapping[str, str]) -> None:
    """`check_form_text` for a form whose inputs are posted under other names than the fields the
    page shows errors beside (`answer_0` for `answers.reason`): each refusal is renamed."""
    request.state.form_text_checked = True
    refusals: dict[str, str] = getattr(request.state, "unsafe_form_text", None) or {}
    if refusals:
        raise _refusal({names.get(key, key): message for key, message in refusals.items()})


def unchecked_form_text(request: Request) -> ValidationFailed | None:
    """The refusal a page never asked for (`check_form_text`): its transaction must not commit."""
    refusals: dict[str, str] = getattr(request.state, "unsafe_form_text", None) or {}
    if refusals and not getattr(request.state, "form_text_checked", False):
        return _refusal(refusals)
    return None


def _refusal(details: dict[str, str]) -> ValidationFailed:
    return ValidationFailed("; ".join(f"{key}: {message}" for key, message in details.items()), details=details)


def _form_text(field: UploadFile | str) -> str:
    return field if isinstance(field, str) else (field.filename or "")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


@dataclass
class _SessionLimits:
    loop: asyncio.AbstractEventLoop
    sessions: asyncio.Semaphore
    writes: asyncio.Semaphore


def _limits(request: Request) -> _SessionLimits:
    """Per app and event loop (asyncio semaphores belong to the loop that first uses them)."""
    loop = asyncio.get_running_loop()
    limits: _SessionLimits | None = getattr(request.app.state, "session_limits", None)
    if limits is None or limits.loop is not loop:
        database = get_db(request)
        # SQLite has one writer at a time anyway; queueing here costs no thread and no connection.
        writers = 1 if database.dialect == "sqlite" else REQUEST_SESSIONS
        limits = _SessionLimits(loop, asyncio.Semaphore(REQUEST_SESSIONS), asyncio.Semaphore(writers))
        request.app.state.session_limits = limits
    return limits


_READ_ONLY = "tertulia_read_only"


def read_only(endpoint: _Endpoint) -> _Endpoint:
    """For a POST that changes nothing (a filter's preview or count, which POSTs because a filter is
    too large for a URL): its request transaction is a read, so on SQLite it neither takes nor waits
    for the one write lock while it runs."""
    setattr(endpoint, _READ_ONLY, True)
    return endpoint


_WRITES = "tertulia_writes"


def writes(endpoint: _Endpoint) -> _Endpoint:
    """For a GET whose work writes (a dry run written in a savepoint and rolled back, a secret made on
    first read): its request transaction is a write one; who may ask is unchanged (a read-only token
    still may). On SQLite a read transaction that starts writing cannot wait for the lock once
    another writer has committed since it began (SQLite refuses at once: "database is locked"); a
    write transaction takes the lock first, in turn."""
    setattr(endpoint, _WRITES, True)
    return endpoint


def is_read(request: Request) -> bool:
    """Whether the request only reads, as far as its asker goes (a read-only token may make it): a
    GET, HEAD or OPTIONS, or a POST marked `read_only`."""
    return request.method in ("GET", "HEAD", "OPTIONS") or getattr(request.scope.get("endpoint"), _READ_ONLY, False)


def _writes(request: Request) -> bool:
    """Whether the request's transaction is a write one: it is not a read, or its endpoint is marked
    `writes`."""
    return not is_read(request) or getattr(request.scope.get("endpoint"), _WRITES, False)


async def db_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request, committed before the response is sent.

    FastAPI runs a sync dependency's setup, the endpoint and the teardown as three separate threadpool
    jobs. With a plain sync dependency, a burst of requests fills the threadpool with endpoints waiting
    for the SQLite write lock or a pooled connection, while the transactions holding them wait for a
    thread to commit in: everything stalls until the busy timeout. So requests queue here, on the
    event loop, before they take a connection, and commit in a worker thread of their own.
    """
    limits = _limits(request)
    write = _writes(request)
    async with limits.sessions, limits.writes if write else _NO_LIMIT:
        session = get_db(request).session(write=write)
        try:
            yield session
            if (refused := unchecked_form_text(request)) is not None:
                raise refused
            await anyio.to_thread.run_sync(session.commit)
        except BaseException:
            await anyio.to_thread.run_sync(session.rollback)
            raise
        finally:
            await anyio.to_thread.run_sync(session.close)


DbSession = Annotated[Session, Depends(db_session, scope="function")]


# The API docs page: Swagger UI from our own static files (no CDN), started by a script of ours
# rather than an inline one, so the page runs under a CSP without 'unsafe-inline' scripts.
API_DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


def install_api_docs(app: FastAPI, *, path: str, js_url: str, css_url: str, icon_url: str) -> None:
    """Serve Swagger UI at `path` for the app's OpenAPI schema (create the app with docs_url=None).
    The page names its icon: otherwise the browser asks for /favicon.ico, a 404."""
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{app.title} API</title><link rel="icon" href="{icon_url}">'
        f'<link rel="stylesheet" href="{css_url}"></head>'
        f'<body><div id="swagger-ui"></div><script src="{js_url}"></script>'
        f'<script src="{path}/start.js"></script></body></html>\n'
    )
    start = (
        "window.ui = SwaggerUIBundle({"
        f"url: {json.dumps(app.openapi_url)}, dom_id: '#swagger-ui', deepLinking: true, "
        "presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'});\n"
    )

    @app.get(path, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": API_DOCS_CSP})

    @app.get(f"{path}/start.js", include_in_schema=False)
    def api_docs_start() -> Response:
        return Response(start, media_type="text/javascript")
