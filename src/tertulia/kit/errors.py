"""Domain errors. One handler renders them as {"error": {"code", "message", "details"}}."""

from typing import Any, TypeVar

_Row = TypeVar("_Row")


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details if details is not None else {}

    def as_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class PermissionDenied(DomainError):
    status_code = 403
    code = "forbidden"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


def found(row: _Row | None, message: str) -> _Row:
    """`row`, or NotFound(message) when there is none."""
    if row is None:
        raise NotFound(message)
    return row


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class ValidationFailed(DomainError):
    """422. `details` maps a field path to its message, e.g. {"email": "not a valid email"}."""

    status_code = 422
    code = "validation_failed"

    @classmethod
    def field(cls, path: str, message: str) -> "ValidationFailed":
        return cls(f"{path}: {message}", details={path: message})


class TooSlow(DomainError):
    """422: a query the request asked for ran past its time limit and was cancelled."""

    status_code = 422
    code = "too_slow"


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": retry_after})
        self.retry_after = retry_after
