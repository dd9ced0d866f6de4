"""Jinja2 with autoescape, the gettext callables, formatting filters and cache-busted static URLs."""

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from tertulia.web import i18n

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
# The shell's templates (layouts, macros, error page), then each domain's `<domain>/templates/`, which
# keeps its templates beside its views under names prefixed by the domain ("contacts/list.html"), so
# no two domains can claim the same name. Found on disk: the shell imports no domain.
TEMPLATE_DIRS = [
    WEB_DIR / "templates",
    *sorted(path for path in WEB_DIR.parent.glob("*/templates") if path.parent != WEB_DIR),
]


@cache
def static_version(path: str) -> str:
    return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]


def static_url(path: str) -> str:
    """Assets are served with a one-year cache; the content hash in the URL makes a change visible."""
    return f"/static/{path}?v={static_version(path)}"


def _datetime(value: Any, style: str = "medium") -> str:
    return i18n.current().datetime(value, style)


def _date(value: Any, style: str = "medium") -> str:
    return i18n.current().date(value, style)


def _ago(value: Any) -> str:
    return i18n.current().ago(value)


def _number(value: Any) -> str:
    return i18n.current().number(value)


def _json_attr(value: Any) -> str:
    """JSON for an attribute such as hx-vals; autoescape then makes it attribute-safe."""
    return json.dumps(value, separators=(",", ":"))


def _initials(name: str) -> str:
    parts = [p for p in name.split() if p]
    letters = "".join(p[0] for p in parts[:2]) if parts else "?"
    return letters.upper()


def _make_environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(path)) for path in TEMPLATE_DIRS]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # newstyle: `_("Hi %(name)s", name=x)` escapes `x` and formats after translating.
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        datetime=_datetime, date=_date, ago=_ago, number=_number, json_attr=_json_attr, initials=_initials
    )
    env.globals.update(static=static_url, languages=i18n.LANGUAGES)
    return env


environment = _make_environment()


def render_string(template: str, context: dict[str, Any]) -> str:
    return environment.get_template(template).render(context)


def render(
    template: str,
    context: dict[str, Any],
    *,
    formatter: i18n.Formatter,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    i18n.activate(formatter)
    return HTMLResponse(render_string(template, context), status_code=status_code, headers=headers)
