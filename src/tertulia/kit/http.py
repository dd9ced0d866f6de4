"""The HTTP boundary: one error shape, and the per-request unit of work."""

from collections.abc import Iterator
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError, RateLimited

log = structlog.get_logger()


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


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
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
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

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "Something went wrong."), status_code=500)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def db_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    with get_db(request).transaction(write=write) as session:
        yield session


DbSession = Annotated[Session, Depends(db_session, scope="function")]
