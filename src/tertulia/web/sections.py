"""The settings area's layout: one sub-navigation over sections that the domains own.

A domain declares each of its settings pages as a `Section` (key, label, permission) beside its views
and builds the page with `section_page` / `render_section`. Which sections exist, and the order the
navigation lists them in, is decided in one place: `app.py` hands the list to `install_sections`.
Nothing registers itself when a module is imported.

Guarantees: a section's page and forms check its permission (`open_section`, 403 without it); the
navigation lists only the sections the person may open; /settings opens the first of them.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import RedirectResponse, Response

from tertulia.kit.errors import PermissionDenied
from tertulia.kit.http import CheckedInputRoute
from tertulia.users.permissions import Permission
from tertulia.web.context import UserPage, WebContext

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)


@dataclass(frozen=True)
class Section:
    key: str  # its URL is /settings/{key}; the navigation's test id is settings-{key}
    label: str  # an i18n.lazy message, translated when the navigation is drawn
    permission: Permission


def install_sections(app: FastAPI, sections: Sequence[Section]) -> None:
    """The settings navigation of this app, in display order."""
    keys = [section.key for section in sections]
    if len(set(keys)) != len(keys):
        raise ValueError(f"settings sections must have distinct keys: {keys}")
    app.state.settings_sections = tuple(sections)


def installed_sections(request: Request) -> tuple[Section, ...]:
    sections: tuple[Section, ...] = getattr(request.app.state, "settings_sections", ())
    return sections


def open_section(ctx: WebContext, section: Section) -> Section:
    """Checks the section's permission (403 without it)."""
    ctx.actor.require(section.permission)
    return section


def render_section(
    ctx: WebContext, section: Section, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """A settings page: `template` extends settings/_layout.html, whose sub-navigation lists the
    sections the person may open, with `section` marked as the current one."""
    visible = [
        (s.key, ctx.fmt.gettext(s.label)) for s in installed_sections(ctx.request) if ctx.actor.can(s.permission)
    ]
    values: dict[str, Any] = {"sections": visible, "section": section.key}
    values.update(context)
    return ctx.render(template, values, status_code=status_code, active="settings")


Page = Callable[..., Response]


def section_page(router: APIRouter, path: str, section: Section) -> Callable[[Page], Page]:
    """Decorates the function that builds a section's page, `page(ctx, **kept)`: registers
    `GET path`, which checks the section's permission and shows `page(ctx)`. The section's forms
    call the same function again with what was typed and the errors."""

    def register(page: Page) -> Page:
        def view(ctx: UserPage) -> Response:
            open_section(ctx, section)
            return page(ctx)

        view.__name__ = view.__qualname__ = page.__name__.strip("_") + "_page"
        router.get(path)(view)
        return page

    return register


@router.get("")
def settings_home(ctx: UserPage) -> Response:
    for section in installed_sections(ctx.request):
        if ctx.actor.can(section.permission):
            return RedirectResponse(f"/settings/{section.key}", status_code=303)
    raise PermissionDenied("You do not have permission to do this.")
