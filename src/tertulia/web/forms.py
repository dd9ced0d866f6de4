"""Form posts in the web app, one shape for all: run the action; when the input is refused, roll back
and show the page again with the messages beside the fields and what was typed kept; on success,
redirect with a flash message (or answer with the caller's own response).
"""

from collections.abc import Callable
from typing import TypeVar

from starlette.responses import Response

from tertulia.kit.errors import Conflict, DomainError, ValidationFailed
from tertulia.kit.http import check_form_text
from tertulia.kit.text import UNSAFE_TEXT_MESSAGE, replace_unsafe_characters
from tertulia.web import i18n
from tertulia.web.context import WebContext

T = TypeVar("T")

# kit.text's message, marked here so the catalogues translate it where a form shows it.
UNSAFE_TEXT = i18n.lazy("must not contain NUL characters or unpaired surrogates")
assert UNSAFE_TEXT == UNSAFE_TEXT_MESSAGE, "the catalogue's wording must be kit.text's"
# What a form shows beside its fields; other errors (403, 404) become the error page.
FORM_ERRORS: tuple[type[DomainError], ...] = (ValidationFailed, Conflict)
# Offered first in the time zone selects (profile, workspace); any valid zone is accepted.
COMMON_TIMEZONES = (
    "UTC",
    "America/Mexico_City",
    "America/Bogota",
    "America/Lima",
    "America/Santiago",
    "America/Argentina/Buenos_Aires",
    "America/Caracas",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Europe/Madrid",
    "Europe/London",
    "Europe/Paris",
    "Atlantic/Canary",
)


def field_errors(ctx: WebContext, exc: DomainError) -> dict[str, str]:
    """Per-field messages, translated where the catalogue knows the wording."""
    if isinstance(exc, Conflict) and exc.code in ("duplicate_email", "duplicate_phone"):
        field = exc.code.removeprefix("duplicate_")
        message = i18n.lazy("Another contact already has this email.")
        if field == "phone":
            message = i18n.lazy("Another contact already has this phone number.")
        return {field: ctx.fmt.gettext(message)}
    details = exc.details if isinstance(exc.details, dict) else {}
    errors = {str(k): ctx.fmt.gettext(str(v)) for k, v in details.items() if isinstance(v, str)}
    return errors or {"__all__": ctx.fmt.gettext(exc.message)}


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
    `again(error)` (the page re-rendered). Otherwise `done(result)`, or a redirect to `redirect`.
    The form's values are checked for NUL and unpaired surrogates first (kit.http.check_form_text),
    so `again` shows that refusal beside the field too."""
    try:
        check_form_text(ctx.request)
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
    (NUL and unpaired surrogates made visible: a page cannot carry them) and `message(error)` beside it."""
    return lambda exc: page(typed={key: replace_unsafe_characters(value)}, errors={key: message(exc)})


def errors_beside(ctx: WebContext, exc: DomainError, field: str = "name") -> dict[str, str]:
    """`field_errors`, with a conflict that names no field (a name already taken) shown beside `field`."""
    errors = field_errors(ctx, exc)
    if isinstance(exc, Conflict) and field not in errors and "__all__" in errors:
        errors = {field: errors["__all__"]}
    return errors
