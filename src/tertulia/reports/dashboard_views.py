"""The Dashboard page (/dashboard, where a signed-in person lands) and its live part, which the page
asks for again every REFRESH_SECONDS with htmx polling: no inline script, so the CSP stays as it is."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from tertulia.kit.http import CheckedInputRoute
from tertulia.reports import dashboard, service
from tertulia.reports.views import DEFINITIONS, NO_HOURS, duration, is_on, static_url
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext

router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=CheckedInputRoute)

STEP_LABELS: dict[str, tuple[str, str]] = {
    "connect_channel": (i18n.lazy("Connect a channel"), "/settings/channels"),
    "invite_teammates": (i18n.lazy("Invite your teammates"), "/settings/users"),
    "answer_message": (i18n.lazy("Answer a customer's message"), "/messages"),
    "create_segment": (i18n.lazy("Create a segment of contacts"), "/contacts"),
}
STATUS_LABELS: dict[str, str] = {
    "online": i18n.lazy("Online"),
    "away": i18n.lazy("Away"),
    "busy": i18n.lazy("Busy"),
    "offline": i18n.lazy("Offline"),
}


BusinessHours = Annotated[str | None, Query(max_length=8)]


def _context(ctx: WebContext, asked: str | None) -> dict[str, Any]:
    has_hours = service.has_business_hours(ctx.session, ctx.actor.workspace_id)
    # As on the reports: a shared address asking for hours in a workspace without them shows the
    # calendar times and the disabled toggle, not an error.
    board = dashboard.build_dashboard(ctx.session, ctx.actor, business_hours=is_on(asked) and has_hours)
    steps = []
    for step in board["getting_started"] or []:
        label, href = STEP_LABELS[step["step"]]
        steps.append({"key": step["step"], "done": step["done"], "label": ctx.fmt.gettext(label), "href": href})
    return {
        "board": board,
        "steps": steps,
        "statuses": {key: ctx.fmt.gettext(label) for key, label in STATUS_LABELS.items()},
        "duration": duration,
        "refresh_seconds": dashboard.REFRESH_SECONDS,
        "has_hours": has_hours,
        "no_hours": ctx.fmt.gettext(NO_HOURS),
        "business_hours_definition": ctx.fmt.gettext(DEFINITIONS["business_hours"]),
    }


@router.get("")
def dashboard_page(ctx: UserPage, business_hours: BusinessHours = None) -> Response:
    context = _context(ctx, business_hours)
    context["reports_css"] = static_url("reports.css")
    return ctx.render("reports/dashboard.html", context, active="dashboard")


@router.get("/live")
def dashboard_live(ctx: UserPage, business_hours: BusinessHours = None) -> Response:
    return ctx.render("reports/_dashboard_live.html", _context(ctx, business_hours), active="dashboard")
