"""Authentication for the REST API: bearer tokens, per-token rate limits."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import RateLimited, Unauthorized
from tertulia.kit.http import get_db
from tertulia.kit.ratelimit import RateLimiter
from tertulia.users.models import ApiToken
from tertulia.users.permissions import Actor
from tertulia.users.service import find_active_api_token

_bearer = HTTPBearer(auto_error=False, description="A workspace API token: `Authorization: Bearer tt_...`")
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)


# Where the body gate (users.session_auth.ApiCredentialGate) leaves the token it found in the request's
# state: a request with a body was checked microseconds before, and a second lookup (a transaction of
# its own) was a fifth of a busy server's time on API writes.
VERIFIED_TOKEN_STATE = "verified_api_token"  # noqa: S105 (a state key, not a secret)


@dataclass(frozen=True)
class VerifiedToken:
    secret: str
    workspace_id: int
    token_id: int
    last_used_at: datetime | None

    @classmethod
    def of(cls, secret: str, token: ApiToken) -> "VerifiedToken":
        return cls(secret, token.workspace_id, token.id, token.last_used_at)


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
    retry_after = limiter.hit(f"token:{actor.token_id}", limit, 60)
    if retry_after:
        raise RateLimited(f"Rate limit of {limit} requests a minute exceeded.", retry_after=retry_after)
    if stale:
        with db.transaction() as session:
            session.execute(update(ApiToken).where(ApiToken.id == actor.token_id).values(last_used_at=utcnow()))
    return actor


ApiActor = Annotated[Actor, Depends(api_actor)]
