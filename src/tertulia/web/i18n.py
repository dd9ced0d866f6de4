"""Languages of the web app: catalogues, negotiation, and locale-aware formatting.

The `.po` catalogues are the source of truth and are compiled in memory the first time they are
needed, so an installation never needs a separate compile step and a stale `.mo` cannot exist.
"""

import datetime as dt
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

from tertulia.kit.clock import as_utc, utcnow

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español"}
DEFAULT_LANGUAGE = "en"


@cache
def translations(language: str) -> Translations:
    """The catalogue for a supported language; English is the source language and falls through."""
    path = TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return Translations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def negotiate(user_language: str | None, accept_language: str | None, workspace_language: str | None) -> str:
    """The user's own choice, else the browser's preference, else the workspace default."""
    if user_language in LANGUAGES:
        return user_language
    for candidate in _parse_accept_language(accept_language or ""):
        if candidate in LANGUAGES:
            return candidate
    if workspace_language in LANGUAGES:
        return workspace_language
    return DEFAULT_LANGUAGE


def _parse_accept_language(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag.split("-")[0].lower()))
    return [tag for _q, _i, tag in sorted(ranked)]


def safe_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Formatter:
    """Dates, times and numbers in one person's language and time zone."""

    language: str
    zone: ZoneInfo

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    def gettext(self, message: str) -> str:
        return translations(self.language).ugettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(self.language).ungettext(singular, plural, n)

    def datetime(self, value: dt.datetime | None, style: str = "medium") -> str:
        if value is None:
            return ""
        return format_datetime(as_utc(value), style, tzinfo=self.zone, locale=self.locale)

    def date(self, value: dt.date | str | None, style: str = "medium") -> str:
        if value in (None, ""):
            return ""
        parsed = dt.date.fromisoformat(value) if isinstance(value, str) else value
        return format_date(parsed, style, locale=self.locale)

    def ago(self, value: dt.datetime | None) -> str:
        if value is None:
            return ""
        return format_timedelta(as_utc(value) - utcnow(), add_direction=True, locale=self.locale)

    def number(self, value: float | None) -> str:
        if value is None:
            return ""
        return format_decimal(value, locale=self.locale)


_current: ContextVar[Formatter] = ContextVar("tertulia_web_formatter")


def activate(formatter: Formatter) -> None:
    """Make `formatter` the one templates use in this thread of execution."""
    _current.set(formatter)


def current() -> Formatter:
    return _current.get(Formatter(DEFAULT_LANGUAGE, ZoneInfo("UTC")))


def gettext(message: str) -> str:
    return current().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return current().ngettext(singular, plural, n)


def lazy(message: str) -> str:
    """Marks a module-level string for extraction; translate it with gettext where it is shown."""
    return message


Gettext = Callable[[str], str]
