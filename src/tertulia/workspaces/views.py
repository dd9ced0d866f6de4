"""Settings > General: the workspace's name, country, time zone, language and inbox visibility,
auto-close, and the business hours of the workspace and of each team (their own pages under
/settings/general/business-hours). The rules live in workspaces/service.py and workspaces/hours.py.
"""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import BaseModel
from sqlalchemy import select
from starlette.responses import Response

from tertulia.kit.errors import DomainError
from tertulia.kit.http import CheckedInputRoute
from tertulia.kit.types import ID
from tertulia.users.models import Team
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import COMMON_TIMEZONES, errors_beside, field_errors, submit
from tertulia.web.sections import Section, open_section, render_section, section_page
from tertulia.workspaces.hours import WEEKDAYS, BusinessHours
from tertulia.workspaces.service import (
    SUPPORTED_LANGUAGES,
    check_team_of,
    current_hours,
    do_follow_workspace_hours,
    do_set_auto_close,
    do_set_business_hours,
    do_update_workspace,
    get_workspace,
)

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

GENERAL = Section("general", i18n.lazy("General"), Permission.MANAGE_WORKSPACE)


@section_page(router, "/general", GENERAL)
def _general(ctx: WebContext, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    """The page's forms show what is stored, except the fields of the form just refused (`typed`)."""
    workspace = get_workspace(ctx.session, ctx.actor.workspace_id)
    stored = {
        "name": workspace.name,
        "default_country": workspace.default_country or "",
        "timezone": workspace.timezone,
        "default_language": workspace.default_language,
        "agents_see_unassigned": "1" if workspace.agents_see_unassigned else "",
        "away_after_minutes": str(workspace.away_after_minutes),
        "auto_close_minutes": str(workspace.auto_close_minutes or ""),
    }
    values = {**stored, **(typed or {})}
    context = {
        "values": values,
        "errors": errors or {},
        "timezones": _zones(values["timezone"]),
        "workspace_languages": SUPPORTED_LANGUAGES,
        "auto_close_choices": _auto_close_choices(ctx, workspace.auto_close_minutes),
        "teams": _teams(ctx),
    }
    return render_section(ctx, GENERAL, "workspaces/settings/general.html", context, status_code=422 if errors else 200)


def _zones(selected: str) -> list[str]:
    zones = list(COMMON_TIMEZONES)
    if selected and selected not in zones:
        zones.insert(0, selected)
    return zones


def _teams(ctx: WebContext) -> list[Team]:
    query = select(Team).where(Team.workspace_id == ctx.actor.workspace_id).order_by(Team.name_key)
    return list(ctx.session.scalars(query))


# The durations offered on the page; the API takes any number of minutes in the allowed range.
AUTO_CLOSE_CHOICES = (30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080, 20160)


def _auto_close_choices(ctx: WebContext, current: int | None) -> list[tuple[str, str]]:
    minutes = sorted(set(AUTO_CLOSE_CHOICES) | ({current} if current else set()))
    choices = [("", ctx.fmt.gettext(i18n.lazy("Off")))]
    for value in minutes:
        if value % 1440 == 0:
            num = value // 1440
            label = ctx.fmt.ngettext("%(num)d day", "%(num)d days", num) % {"num": num}
        elif value % 60 == 0:
            num = value // 60
            label = ctx.fmt.ngettext("%(num)d hour", "%(num)d hours", num) % {"num": num}
        else:
            label = ctx.fmt.ngettext("%(num)d minute", "%(num)d minutes", value) % {"num": value}
        choices.append((str(value), label))
    return choices


class AutoCloseForm(BaseModel):
    auto_close_minutes: str = ""


@router.post("/general/auto-close")
def save_auto_close(ctx: UserPage, form: Annotated[AutoCloseForm, Form()]) -> Response:
    open_section(ctx, GENERAL)
    raw = form.auto_close_minutes.strip()
    minutes = int(raw) if raw.isdigit() else None
    return submit(
        ctx,
        lambda: do_set_auto_close(ctx.session, ctx.actor, minutes if raw else None),
        again=lambda exc: _general(ctx, {"auto_close_minutes": raw}, errors_beside(ctx, exc, "auto_close_minutes")),
        redirect="/settings/general",
        flash="settings_saved",
    )


# ----- business hours -----------------------------------------------------------------------
# The page writes each weekday's blocks on one line ("09:00-14:00, 16:00-19:00") and holidays one
# per line ("2026-12-25 Navidad"); the service's field paths (week.monday[1].end) are shown beside
# the weekday's input with the block they are about.

_PATH = re.compile(r"^(?:week\.(?P<day>[a-z]+)|holidays)\[(?P<index>\d+)\]")


def _hours_values(hours: BusinessHours, *, follow_workspace: bool = False) -> dict[str, str]:
    values = {
        "enabled": "1" if hours.enabled else "",
        "timezone": hours.timezone,
        "holidays": "\n".join(f"{h.day.isoformat()} {h.name}".strip() for h in hours.holidays),
        "follow_workspace": "1" if follow_workspace else "",
    }
    for day, blocks in zip(WEEKDAYS, hours.week, strict=True):
        values[day] = ", ".join(block.label() for block in blocks)
    return values


def _pieces(text: str, separator: str) -> list[str]:
    return [part.strip() for part in text.split(separator) if part.strip()]


def hours_data(values: dict[str, str]) -> dict[str, Any]:
    """The page's fields in the API's shape (a block that is not "HH:MM-HH:MM" fails as a time)."""
    week: dict[str, list[dict[str, str]]] = {}
    for day in WEEKDAYS:
        blocks = []
        for part in _pieces(values.get(day, ""), ","):
            start, _, end = part.partition("-")
            blocks.append({"start": start.strip(), "end": end.strip()})
        week[day] = blocks
    holidays = []
    for line in _pieces(values.get("holidays", ""), "\n"):
        day, _, name = line.partition(" ")
        holidays.append({"date": day, "name": name.strip()})
    return {
        "enabled": bool(values.get("enabled")),
        "timezone": values.get("timezone") or None,
        "week": week,
        "holidays": holidays,
    }


def hours_errors(ctx: WebContext, exc: DomainError, values: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for path, message in field_errors(ctx, exc).items():
        match = _PATH.match(path)
        if match is None:
            errors.setdefault(path.removeprefix("week."), message)
            continue
        key = match.group("day") or "holidays"
        separator = "\n" if key == "holidays" else ","
        parts = _pieces(values.get(key, ""), separator)
        index = int(match.group("index"))
        which = parts[index] if index < len(parts) else ""
        errors.setdefault(key, f"{which}: {message}" if which else message)
    return errors


class HoursForm(BaseModel):
    enabled: str = ""
    timezone: str = ""
    monday: str = ""
    tuesday: str = ""
    wednesday: str = ""
    thursday: str = ""
    friday: str = ""
    saturday: str = ""
    sunday: str = ""
    holidays: str = ""


class TeamHoursForm(HoursForm):
    follow_workspace: str = ""  # a checkbox: "1" when ticked


def _hours_page(
    ctx: WebContext,
    team: Team | None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    if values is None:
        own = current_hours(ctx.session, ctx.actor.workspace_id, team.id if team else None)
        shown = own or current_hours(ctx.session, ctx.actor.workspace_id)
        assert shown is not None
        values = _hours_values(shown, follow_workspace=own is None)
    context = {
        "values": values,
        "errors": errors or {},
        "timezones": _zones(values["timezone"]),
        "weekdays": WEEKDAYS,
        "team": team,
        "action": f"/settings/general/business-hours/teams/{team.id}" if team else "/settings/general/business-hours",
    }
    return render_section(
        ctx, GENERAL, "workspaces/settings/business_hours.html", context, status_code=422 if errors else 200
    )


@section_page(router, "/general/business-hours", GENERAL)
def _business_hours(ctx: WebContext) -> Response:
    return _hours_page(ctx, None)


@router.get("/general/business-hours/teams/{team_id}")
def team_business_hours(ctx: UserPage, team_id: ID) -> Response:
    open_section(ctx, GENERAL)
    return _hours_page(ctx, check_team_of(ctx.session, ctx.actor, team_id))


def _save_hours(ctx: WebContext, team: Team | None, form: HoursForm) -> Response:
    values = form.model_dump()
    follow = isinstance(form, TeamHoursForm) and bool(form.follow_workspace)
    url = f"/settings/general/business-hours/teams/{team.id}" if team else "/settings/general/business-hours"

    def save() -> object:
        if team is not None and follow:
            do_follow_workspace_hours(ctx.session, ctx.actor, team.id)
            return None
        return do_set_business_hours(ctx.session, ctx.actor, hours_data(values), team_id=team.id if team else None)

    return submit(
        ctx,
        save,
        again=lambda exc: _hours_page(ctx, team, values, hours_errors(ctx, exc, values)),
        redirect=url,
        flash="settings_saved",
    )


@router.post("/general/business-hours")
def save_business_hours(ctx: UserPage, form: Annotated[HoursForm, Form()]) -> Response:
    open_section(ctx, GENERAL)
    return _save_hours(ctx, None, form)


@router.post("/general/business-hours/teams/{team_id}")
def save_team_business_hours(ctx: UserPage, team_id: ID, form: Annotated[TeamHoursForm, Form()]) -> Response:
    open_section(ctx, GENERAL)
    return _save_hours(ctx, check_team_of(ctx.session, ctx.actor, team_id), form)


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
