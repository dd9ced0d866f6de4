"""Logging for production: structlog over the standard library, one line per event, secrets redacted.

Guarantees, once `configure_logging` has run in the process:
- every record (ours through structlog, uvicorn's and other libraries' through `logging`) goes to
  standard error through one formatter, as `key=value` text (`TERTULIA_LOG_FORMAT=plain`) or one JSON
  object per line (`json`);
- exceptions are rendered as a plain standard-library traceback: no local variables, no rich
  rendering, so logging one costs about a millisecond and never dumps request scopes;
- values under keys that hold credentials (Authorization, Cookie, Set-Cookie, passwords, tokens)
  are replaced by `[redacted]`, and the finished line is scrubbed of anything token-like: bearer
  values, API tokens (`tt_...`), session/CSRF/flash cookie values, `token=` query parameters,
  visitor tokens, Telegram bot tokens in Bot API URLs and the secret part of invitation and
  password-reset links;
- an exception the HTTP error handler already logged (`mark_logged`) is not logged again when the
  server re-raises it (that report would be formatted on the event loop).
"""

import contextlib
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tertulia.kit.settings import Settings

LogFormat = Literal["plain", "json"]
REDACTED = "[redacted]"
HANDLER_NAME = "tertulia"
# Keys (dict keys or header names, compared lower-cased) whose values are never written.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-csrf-token",
        "csrf_token",
        "password",
        "new_password",
        "secret",
        "secret_key",
        "token",
        "user_hash",
        "identity_secret",
        "bot_token",
        "webhook_secret",
        "x-telegram-bot-api-secret-token",
    }
)
# Applied to the rendered line, so secrets inside exception messages, reprs and URLs go too.
_SCRUBBERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[^\s'\",;\\]+"), r"\1\2" + REDACTED),
    (re.compile(r"\btt_[A-Za-z0-9_\-]{6,}"), "tt_" + REDACTED),
    (
        re.compile(r"(?i)\b(tertulia_(?:session|csrf|flash|device))=[^;\s'\",\\]+"),
        r"\1=" + REDACTED,
    ),
    (re.compile(r"(?i)([?&;]|\b)((?:[a-z_]*_)?token)=[^&\s'\"#\\]+"), r"\1\2=" + REDACTED),
    # A link's token may start with digits ("9-smQ..."): only digits up to the segment's end are an id.
    (re.compile(r"/(invitations|password-reset)/(?!\d+(?:[/\s?'\"#\\]|$))[^/\s?'\"#\\]+"), r"/\1/" + REDACTED),
    # Telegram bot tokens in Bot API URLs (/bot<id>:<secret>/method, /file/bot<id>:<secret>/path).
    (re.compile(r"/bot\d+:[A-Za-z0-9_\-]+"), "/bot" + REDACTED),
    # Visitor tokens: a base64url body, a dot and a 43-character base64url HMAC-SHA256.
    (re.compile(r"\b[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])"), REDACTED),
]
_MAX_DEPTH = 6

_configured = False


def scrub(text: str) -> str:
    """`text` with every token-like substring replaced by `[redacted]`."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: object) -> bool:
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def _redact_value(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(k) else _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and _is_secret_key(value[0]):  # a (name, value) header pair
            return (value[0], REDACTED)
        return [_redact_value(item, depth + 1) for item in value]
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace the values of credential-holding keys, at any depth of the event."""
    for key, value in list(event_dict.items()):
        event_dict[key] = REDACTED if _is_secret_key(key) else _redact_value(value)
    return event_dict


def _scrub_rendered(_logger: WrappedLogger, _method: str, rendered: Any) -> Any:
    return scrub(rendered) if isinstance(rendered, str) else rendered


def mark_logged(exc: BaseException) -> None:
    """Note that `exc` has been logged, so the server's own report of it is dropped."""
    with contextlib.suppress(AttributeError):  # exceptions with __slots__ cannot be marked
        exc._tertulia_logged = True  # type: ignore[attr-defined]


class _SkipLoggedExceptions(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "_tertulia_logged", False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (test runners replace it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    """The one formatter: plain `key=value` or JSON lines, plain tracebacks, secrets redacted."""
    renderer: Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(default=repr)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A plain traceback, without local variables, as a string under "exception".
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
            _scrub_rendered,
        ],
    )


def make_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(_SkipLoggedExceptions())
    return handler


def configure_logging(settings: Settings, *, force: bool = False) -> None:
    """Set up structlog and the root logger for this process (once; again only with `force`)."""
    global _configured
    if _configured and not force:
        return
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(existing)
    handler = make_handler(settings.log_format)
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # huey reports every task it runs at INFO; our tasks log what matters themselves.
    logging.getLogger("huey").setLevel(max(root.level, logging.WARNING))
    # uvicorn reports every exception a handler already logged ("Exception in ASGI application"), on the
    # event loop; a filter on the logger itself drops that record before any handler formats it.
    server_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _SkipLoggedExceptions) for f in server_errors.filters):
        server_errors.addFilter(_SkipLoggedExceptions())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's own loggers propagate to the root handler instead of getting handlers of their own."""
    return {"log_config": None, "log_level": settings.log_level}
