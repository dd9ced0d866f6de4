"""The public endpoint of workflows' incoming webhooks (hooks.py says what it does).

POST /hooks/workflows/{id}/{secret}      or /hooks/workflows/{id} with the X-Tertulia-Secret header

Errors have the API's shape. Requests are counted per workflow once the secret matches (the API's
per-token budget a minute) and per client address when it does not, so guessing costs time.
"""

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tertulia.channels.http import RawBodyRoute
from tertulia.kit.errors import DomainError, RateLimited
from tertulia.kit.http import error_responses, get_db
from tertulia.kit.types import ID
from tertulia.workflows import hooks

# A wrong secret or workflow is a 404 (never a 401: the URL is the credential); a body that is not
# a JSON object, 422; too big, 413; too many, 429; a body that cannot be read, 400.
router = APIRouter(
    prefix=hooks.PATH,
    tags=["workflow hooks"],
    route_class=RawBodyRoute,
    responses=error_responses(400, 404, 413, 422, 429),
)

WRONG_SECRETS_PER_MINUTE = 30


class TooLarge(DomainError):
    status_code = 413
    code = "too_large"


class HookAnswer(BaseModel):
    started: bool
    run_id: int | None = Field(description="The run that started.")
    contact_id: int | None = Field(description="The contact the body named (found or created).")
    reason: str | None = Field(
        description="Why no run started: not_published, wrong_trigger, contact_blocked, conditions_not_met, "
        "already_running or already_ran."
    )
    message: str | None


def _throttle(request: Request, key: str, limit: int) -> None:
    retry_after = request.app.state.rate_limiter.hit(f"wfhook:{key}", limit, 60)
    if retry_after:
        raise RateLimited("Too many requests to this webhook; wait a moment.", retry_after=retry_after)


async def _body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > hooks.MAX_BODY:
        raise TooLarge(f"The body must be at most {hooks.MAX_BODY // 1024} KB.")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > hooks.MAX_BODY:
            raise TooLarge(f"The body must be at most {hooks.MAX_BODY // 1024} KB.")
    return hooks.parse_body(bytes(raw))


async def _receive(request: Request, workflow_id: int, secret: str | None) -> JSONResponse:
    db = get_db(request)

    def verify() -> int:
        with db.transaction(write=False) as session:
            return hooks.verified_workflow(session, workflow_id, secret).workspace_id

    try:
        await anyio.to_thread.run_sync(verify)
    except DomainError:
        client = request.client.host if request.client else "unknown"
        _throttle(request, f"wrong:{client}", WRONG_SECRETS_PER_MINUTE)
        raise
    _throttle(request, str(workflow_id), request.app.state.settings.api_rate_limit_per_minute)
    body = await _body(request)

    def receive() -> hooks.Received:
        with db.transaction() as session:
            workflow = hooks.verified_workflow(session, workflow_id, secret)
            return hooks.receive(session, workflow, body)

    received = await anyio.to_thread.run_sync(receive)
    answer = HookAnswer(
        started=received.run_id is not None,
        run_id=received.run_id,
        contact_id=received.contact_id,
        reason=received.reason,
        message=received.message,
    )
    return JSONResponse(answer.model_dump(), status_code=202)


@router.post("/{workflow_id}/{secret}", response_model=HookAnswer, status_code=202)
async def receive_with_secret(request: Request, workflow_id: ID, secret: str) -> JSONResponse:
    return await _receive(request, workflow_id, secret)


@router.post("/{workflow_id}", response_model=HookAnswer, status_code=202)
async def receive_with_header(
    request: Request,
    workflow_id: ID,
    secret: Annotated[str | None, Header(alias=hooks.HEADER)] = None,
) -> JSONResponse:
    return await _receive(request, workflow_id, secret)
