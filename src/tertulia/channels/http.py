"""Public channel endpoints (widget, provider webhooks) always answer errors as JSON, whatever
the app's page-oriented handlers do for browser paths."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tertulia.kit.errors import DomainError, RateLimited
from tertulia.kit.http import error_body, validation_details


class JsonErrorRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except DomainError as exc:
                headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
                return JSONResponse(exc.as_body(), status_code=exc.status_code, headers=headers)
            except RequestValidationError as exc:
                details = validation_details(exc.errors())
                message = "; ".join(f"{k}: {v}" for k, v in details.items())
                return JSONResponse(error_body("validation_failed", message, details), status_code=422)

        return handler
