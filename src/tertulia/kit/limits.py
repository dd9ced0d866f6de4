"""Request bodies are bounded before anything parses them.

Guarantees of `BodyLimitMiddleware`, for every HTTP request:
- a body whose `Content-Length` is over the route's limit is refused with 413 before a byte of it is
  read; a body sent without a length (chunked) is counted as it streams and refused with 413 as soon as
  it passes the limit, so nothing (JSON in memory, multipart spooled to disk) grows past the limit;
- the limit is per route: the first `BodyLimit` whose method and path match, else the default;
  routes that take files have larger limits, and their handlers still check their own exact limit;
- an API request's credential is checked before its body is read by users.session_auth's
  `ApiCredentialGate`, which needs the database (kit knows no users);
- refusals use the one error shape, `{"error": {"code", "message", "details"}}`.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tertulia.kit.http import error_body
from tertulia.kit.settings import Settings

MiB = 1024 * 1024
# Room for the multipart envelope and the other form fields around an uploaded file.
MULTIPART_OVERHEAD = 1 * MiB


@dataclass(frozen=True)
class BodyLimit:
    method: str
    path: re.Pattern[str]
    max_bytes: int

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path.fullmatch(path) is not None


class BodyTooLarge(HTTPException):
    """Raised from `receive` while a body streams in. An HTTPException, so that FastAPI, which turns
    other exceptions met while reading a body into 400s, lets it through as the 413 it is."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body is larger than the {max_bytes} bytes this URL accepts.")


# The public widget takes a visitor's message (at most 10,000 characters) or a session request.
WIDGET_MAX_BYTES = 128 * 1024


def upload_limits(settings: Settings, *, import_max_bytes: int, knowledge_import_max_bytes: int) -> list[BodyLimit]:
    """The routes that take files (the per-file upload limit, or a CSV import's limit), and the
    public widget, held to less than the default. A page's upload gets room for its envelope above
    the file's own limit, so its handler, not this middleware, refuses a file just over it: with the
    message beside the field, in the reader's language."""
    upload = settings.upload_max_bytes + MULTIPART_OVERHEAD
    return [
        BodyLimit("POST", re.compile(r"/widget/.*"), WIDGET_MAX_BYTES),
        BodyLimit("POST", re.compile(r"/api/v1/files"), upload),
        BodyLimit("POST", re.compile(r"/messages/files"), upload),
        BodyLimit("POST", re.compile(r"/settings/snippets(/\d+)?"), upload),
        BodyLimit("POST", re.compile(r"/contacts/import"), import_max_bytes + MULTIPART_OVERHEAD),
        BodyLimit("POST", re.compile(r"/settings/knowledge/import"), knowledge_import_max_bytes + MULTIPART_OVERHEAD),
    ]


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        default_max_bytes: int,
        routes: Sequence[BodyLimit] = (),
    ) -> None:
        self.app = app
        self.default_max_bytes = default_max_bytes
        self.routes = list(routes)

    def limit_for(self, method: str, path: str) -> int:
        for route in self.routes:
            if route.matches(method, path):
                return route.max_bytes
        return self.default_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        max_bytes = self.limit_for(scope["method"], scope["path"])
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            await _too_large(max_bytes)(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(max_bytes)(scope, receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    exc = BodyTooLarge(max_bytes)
    return JSONResponse(error_body("payload_too_large", str(exc.detail)), status_code=413)
