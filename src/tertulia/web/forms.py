"""Form posts in the web app, one shape for all: run the action; when the input is refused, roll back
and show the page again with the messages beside the fields and what was typed kept; on success,
redirect with a flash message (or answer with the caller's own response).
"""

from collections.abc import Callable
from typing import TypeVar

from starlette.responses import Response

from tertulia.kit.errors import Conflict, DomainError, ValidationFailed
from tertulia.web.context import WebContext

T = TypeVar("T")

# What a form shows beside its fields; other errors (403, 404) become the error page.
FORM_ERRORS: tuple[type[DomainError], ...] = (ValidationFailed, Conflict)


def submit(
    ctx: WebContext,
    action: Callable[[], T],
    *,
    again: Callable[[DomainError], Response],
    redirect: str = "",
    flash: str | None = None,
    done: Callable[[T], Response] | None = None,
    catch: tuple[type[DomainError], ...] = FORM_ERRORS,
) -> Response:
    """`action` changes data; a refusal listed in `catch` rolls the transaction back and returns
    `again(error)` (the page re-rendered). Otherwise `done(result)`, or a redirect to `redirect`."""
    try:
        result = action()
    except catch as exc:
        ctx.session.rollback()
        return again(exc)
    if done is not None:
        return done(result)
    return ctx.redirect(redirect, flash=flash)


def first_message(errors: dict[str, str]) -> str:
    """For a form with one input: the first message, whichever field the service named."""
    return next(iter(errors.values()))


def keep_one(
    page: Callable[..., Response], key: str, value: str, message: Callable[[DomainError], str]
) -> Callable[[DomainError], Response]:
    """`again` for a form with one input: `page(typed=..., errors=...)` with what was typed in `key`
    and `message(error)` beside it."""
    return lambda exc: page(typed={key: value}, errors={key: message(exc)})
