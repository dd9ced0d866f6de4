"""Settings > General: the workspace's name, country, time zone, language and inbox visibility.
The rules live in workspaces/service.py.
"""

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import BaseModel
from starlette.responses import Response

from tertulia.kit.http import CheckedInputRoute
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import COMMON_TIMEZONES, errors_beside, submit
from tertulia.web.sections import Section, open_section, render_section, section_page
from tertulia.workspaces.service import SUPPORTED_LANGUAGES, do_update_workspace, get_workspace

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

GENERAL = Section("general", i18n.lazy("General"), Permission.MANAGE_WORKSPACE)


@section_page(router, "/general", GENERAL)
def _general(ctx: WebContext, values: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    workspace = get_workspace(ctx.session, ctx.actor.workspace_id)
    values = values or {
        "name": workspace.name,
        "default_country": workspace.default_country or "",
        "timezone": workspace.timezone,
        "default_language": workspace.default_language,
        "agents_see_unassigned": "1" if workspace.agents_see_unassigned else "",
        "away_after_minutes": str(workspace.away_after_minutes),
    }
    zones = list(COMMON_TIMEZONES)
    if values["timezone"] and values["timezone"] not in zones:
        zones.insert(0, values["timezone"])
    context = {"values": values, "errors": errors or {}, "timezones": zones, "workspace_languages": SUPPORTED_LANGUAGES}
    return render_section(ctx, GENERAL, "workspaces/settings/general.html", context, status_code=422 if errors else 200)


class GeneralForm(BaseModel):
    name: str = ""
    default_country: str = ""
    timezone: str = ""
    default_language: str = ""
    agents_see_unassigned: str = ""  # a checkbox: "1" when ticked, absent when not
    away_after_minutes: str = ""


@router.post("/general")
def save_general(ctx: UserPage, form: Annotated[GeneralForm, Form()]) -> Response:
    open_section(ctx, GENERAL)
    values = form.model_dump()
    away = form.away_after_minutes.strip()
    if away and not away.isdigit():
        away = "0"  # refused by the service with the range, beside the field
    return submit(
        ctx,
        lambda: do_update_workspace(
            ctx.session,
            ctx.actor,
            name=form.name,
            default_country=form.default_country.strip() or None,
            timezone=form.timezone,
            default_language=form.default_language,
            agents_see_unassigned=bool(form.agents_see_unassigned),
            away_after_minutes=int(away[:6]) if away else None,
        ),
        again=lambda exc: _general(ctx, values, errors_beside(ctx, exc)),
        redirect="/settings/general",
        flash="settings_saved",
    )
