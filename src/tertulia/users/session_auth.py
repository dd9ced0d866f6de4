"""Who is calling a JSON endpoint that serves both the app's own pages and integrations (the inbox,
channels): an API token (Authorization: Bearer) or a signed-in browser (the session cookie).
Browser writes must carry the session's CSRF token in `X-CSRF-Token`.

`ApiCredentialGate` checks the credential of every /api/ request that carries a body before the body
is read: FastAPI reads and parses a body before it runs an endpoint's dependencies, so without it a
made-up token was enough to make the server read a body up to the route's limit.
"""

from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError, PermissionDenied, Unauthorized
from tertulia.kit.http import get_db
from tertulia.kit.security import same_secret
from tertulia.users.auth import VERIFIED_TOKEN_STATE, VerifiedToken, api_actor
from tertulia.users.permissions import Actor
from tertulia.users.service import find_active_api_token
from tertulia.users.sessions import SESSION_COOKIE, resolve_session

_bearer = HTTPBearer(auto_error=False, description="An API token, or sign in for the session cookie.")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "x-csrf-token"


def session_or_token_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    if credentials is not None:
        return api_actor(request, credentials)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("Sign in, or send an API token.")
    with get_db(request).transaction(write=False) as session:
        current = resolve_session(session, token)
        if current is None:
            raise Unauthorized("Your session has expired; sign in again.")
        csrf = current.web_session.csrf_token
        actor = current.actor
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not same_secret(sent, csrf):
            raise PermissionDenied("Missing or wrong CSRF token.", code="csrf_failed")
    return actor


SessionOrTokenActor = Annotated[Actor, Depends(session_or_token_actor)]


def _bearer_value(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _session_cookie(headers: Headers) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None


def check_api_credential(database: Database, headers: Headers, method: str) -> VerifiedToken | None:
    """What the endpoints' dependencies would decide about the credential alone, without the body:
    raises Unauthorized (none, unknown, revoked or expired) or PermissionDenied (a browser write
    without its session's CSRF token). The dependency still runs, and decides the rest; for an API
    token it is given the token found here (`VerifiedToken`), so the token is looked up once."""
    bearer = _bearer_value(headers)
    cookie = _session_cookie(headers)
    if bearer is None and cookie is None:
        raise Unauthorized("Missing bearer token.")
    with database.transaction(write=False) as session:
        if bearer is not None:
            token = find_active_api_token(session, bearer)
            if token is None:
                raise Unauthorized("Invalid or revoked token.")
            return VerifiedToken.of(bearer, token)
        current = resolve_session(session, cookie)
        if current is None:
            raise Unauthorized("Your session has expired; sign in again.")
        csrf = current.web_session.csrf_token
    sent = headers.get(CSRF_HEADER, "")
    if method not in SAFE_METHODS and (not sent or not same_secret(sent, csrf)):
        raise PermissionDenied("Missing or wrong CSRF token.", code="csrf_failed")
    return None


def _has_body(headers: Headers) -> bool:
    declared = headers.get("content-length")
    return (declared is not None and declared.strip() != "0") or "chunked" in headers.get(
        "transfer-encoding", ""
    ).lower()


class ApiCredentialGate:
    """Refuses an /api/ request with a body whose credential is missing or not valid, before a byte
    of the body is read (401, or 403 for a browser write without its CSRF token)."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if _has_body(headers):
            database: Database = scope["app"].state.db
            try:
                verified = await anyio.to_thread.run_sync(check_api_credential, database, headers, scope["method"])
            except DomainError as exc:
                auth = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
                await JSONResponse(exc.as_body(), status_code=exc.status_code, headers=auth)(scope, receive, send)
                return
            if verified is not None:
                scope.setdefault("state", {})[VERIFIED_TOKEN_STATE] = verified
        await self.app(scope, receive, send)
