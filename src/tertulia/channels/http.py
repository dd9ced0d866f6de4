"""Public channel endpoints (widget, provider webhooks) always answer errors as JSON, whatever
the app's page-oriented handlers do for browser paths."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from tertulia.kit.errors import DomainError, RateLimited
from tertulia.kit.http import CheckedInputRoute, error_body, validation_details


def domain_error_response(exc: DomainError) -> JSONResponse:
    """A refusal as these endpoints answer it: the error body, and Retry-After when rate limited."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return JSONResponse(exc.as_body(), status_code=exc.status_code, headers=headers)


class JsonErrorRoute(CheckedInputRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except DomainError as exc:
                return domain_error_response(exc)
            except RequestValidationError as exc:
                details = validation_details(exc.errors())
                message = "; ".join(f"{k}: {v}" for k, v in details.items())
                return JSONResponse(error_body("validation_failed", message, details), status_code=422)

        return handler


class RawBodyRoute(JsonErrorRoute):
    """Provider callbacks: verified over their raw bytes and stored as bytes, so the body is left
    unread here; what they carry is made safe when it is parsed (kit.text.replace_unsafe_characters)."""

    checks_body = False
