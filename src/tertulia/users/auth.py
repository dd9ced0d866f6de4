"""Authentication for the REST API: bearer tokens, their scopes, per-token rate limits and the
X-RateLimit-* headers that tell an integration where it stands."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import PermissionDenied, RateLimited, Unauthorized
from tertulia.kit.http import get_db, is_read
from tertulia.kit.ratelimit import Allowance, RateLimiter
from tertulia.users.models import ApiToken, TokenScope
from tertulia.users.permissions import Actor
from tertulia.users.service import find_active_api_token

_bearer = HTTPBearer(auto_error=False, description="A workspace API token: `Authorization: Bearer tt_...`")
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)


# Where the body gate (users.session_auth.ApiCredentialGate) leaves the token it found in the request's
# state: a request with a body was checked microseconds before, and a second lookup (a transaction of
# its own) was a fifth of a busy server's time on API writes.
VERIFIED_TOKEN_STATE = "verified_api_token"  # noqa: S105 (a state key, not a secret)


# Where `api_actor` leaves the request's place in its token's budget, for RateLimitHeaders.
RATE_LIMIT_STATE = "api_rate_limit"
API_VERSION_PREFIX = "/api/v1/"

# Which scope reaches which resource, by the first path segment after /api/v1/. A resource not named
# here (channels, users, teams, webhooks, and any module until it is named) needs `admin`;
# `read_only` reads every resource.
RESOURCE_SCOPES: dict[str, TokenScope] = {
    "contacts": TokenScope.CONTACTS,
    "custom-fields": TokenScope.CONTACTS,
    "tags": TokenScope.CONTACTS,
    "segments": TokenScope.CONTACTS,
    "conversations": TokenScope.MESSAGES,
    "files": TokenScope.MESSAGES,
    "snippets": TokenScope.MESSAGES,
    "closing-categories": TokenScope.MESSAGES,
    "broadcasts": TokenScope.BROADCASTS,
    "broadcast-settings": TokenScope.BROADCASTS,
    "broadcast-opt-outs": TokenScope.BROADCASTS,
}


def resource_scope(path: str) -> TokenScope:
    """The scope a token needs to write (or, without `read_only`, to read) at `path`."""
    resource = path.removeprefix(API_VERSION_PREFIX).split("/", 1)[0] if path.startswith(API_VERSION_PREFIX) else ""
    return RESOURCE_SCOPES.get(resource, TokenScope.ADMIN)


def check_token_scope(scopes: Sequence[str], request: Request) -> None:
    if TokenScope.ADMIN in scopes or (TokenScope.READ_ONLY in scopes and is_read(request)):
        return
    needed = resource_scope(request.url.path)
    if needed not in scopes:
        raise PermissionDenied(
            "This API token's scopes do not allow this request.",
            code="token_scope",
            details={"needed": needed.value, "token_scopes": list(scopes)},
        )


@dataclass(frozen=True)
class VerifiedToken:
    secret: str
    workspace_id: int
    token_id: int
    last_used_at: datetime | None
    scopes: tuple[str, ...]

    @classmethod
    def of(cls, secret: str, token: ApiToken) -> "VerifiedToken":
        return cls(secret, token.workspace_id, token.id, token.last_used_at, tuple(token.scopes))


def _look_up(request: Request, secret: str) -> VerifiedToken:
    verified = getattr(request.state, VERIFIED_TOKEN_STATE, None)
    if isinstance(verified, VerifiedToken) and verified.secret == secret:
        return verified
    with get_db(request).transaction(write=False) as session:
        token = find_active_api_token(session, secret)
        if token is None:
            raise Unauthorized("Invalid or revoked token.")
        return VerifiedToken.of(secret, token)


def api_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("Missing bearer token.")
    db = get_db(request)
    token = _look_up(request, credentials.credentials)
    actor = Actor(workspace_id=token.workspace_id, kind="api", token_id=token.token_id)
    stale = token.last_used_at is None or utcnow() - token.last_used_at > LAST_USED_GRANULARITY
    limiter: RateLimiter = request.app.state.rate_limiter
    limit = request.app.state.settings.api_rate_limit_per_minute
    allowance = limiter.take(f"token:{actor.token_id}", limit, 60)
    setattr(request.state, RATE_LIMIT_STATE, allowance)
    if not allowance.allowed:
        raise RateLimited(f"Rate limit of {limit} requests a minute exceeded.", retry_after=allowance.retry_after)
    check_token_scope(token.scopes, request)
    if stale:
        with db.transaction() as session:
            session.execute(update(ApiToken).where(ApiToken.id == actor.token_id).values(last_used_at=utcnow()))
    return actor


ApiActor = Annotated[Actor, Depends(api_actor)]


class RateLimitHeaders:
    """Adds X-RateLimit-Limit, -Remaining and -Reset (seconds until a place frees) to every response
    of a request counted against an API token, the refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            allowance = state.get(RATE_LIMIT_STATE)
            if message["type"] == "http.response.start" and isinstance(allowance, Allowance):
                headers = MutableHeaders(scope=message)
                headers["X-RateLimit-Limit"] = str(allowance.limit)
                headers["X-RateLimit-Remaining"] = str(allowance.remaining)
                headers["X-RateLimit-Reset"] = str(allowance.reset_seconds)
            await send(message)

        await self.app(scope, receive, send_with_headers)
