"""Who is calling a JSON endpoint that serves both the app's own pages and integrations (the inbox,
channels): an API token (Authorization: Bearer) or a signed-in browser (the session cookie).
Browser writes must carry the session's CSRF token in `X-CSRF-Token`."""

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tertulia.kit.errors import PermissionDenied, Unauthorized
from tertulia.kit.http import get_db
from tertulia.users.auth import api_actor
from tertulia.users.permissions import Actor
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
        if not sent or not hmac.compare_digest(sent, csrf):
            raise PermissionDenied("Missing or wrong CSRF token.", code="csrf_failed")
    return actor


SessionOrTokenActor = Annotated[Actor, Depends(session_or_token_actor)]
