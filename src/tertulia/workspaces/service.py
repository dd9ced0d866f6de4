"""Workspaces: creation (with its owner) and general settings: business hours (their versions),
auto-close."""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.text import fold
from tertulia.users.models import Team
from tertulia.users.permissions import Actor, Permission
from tertulia.workspaces.hours import ALWAYS_OPEN, BusinessHours, HoursHistory, Version, parse_hours
from tertulia.workspaces.models import BusinessHoursVersion, Workspace

SUPPORTED_LANGUAGES = ("en", "es")


MIN_AWAY_MINUTES = 1
MAX_AWAY_MINUTES = 60


def check_workspace_name(session: Session, name: str, *, exclude_id: int | None = None) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValidationFailed.field("name", "is required")
    if len(cleaned) > 120:
        raise ValidationFailed.field("name", "must be at most 120 characters")
    query = select(Workspace.id).where(Workspace.name_key == fold(cleaned))
    if exclude_id is not None:
        query = query.where(Workspace.id != exclude_id)
    if session.scalar(query) is not None:
        raise Conflict(f"A workspace named {cleaned!r} already exists.", details={"name": "already exists"})
    return cleaned


def check_timezone(value: str, field: str = "timezone") -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed.field(field, f"unknown time zone {value!r}") from exc
    return value


def check_country(value: str, field: str = "country") -> str:
    code = value.strip().upper()
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValidationFailed.field(field, f"unknown ISO 3166-1 alpha-2 country code {value!r}")
    return code


def check_language(value: str, field: str = "language") -> str:
    code = value.strip().lower()
    if len(code) != 2 or pycountry.languages.get(alpha_2=code) is None:
        raise ValidationFailed.field(field, f"unknown ISO 639-1 language code {value!r}")
    return code


def do_create_workspace(
    session: Session,
    name: str,
    *,
    default_country: str | None = None,
    timezone: str = "UTC",
    default_language: str = "en",
) -> Workspace:
    cleaned = check_workspace_name(session, name)
    workspace = Workspace(
        name=cleaned,
        name_key=fold(cleaned),
        default_country=check_country(default_country, "default_country") if default_country else None,
        timezone=check_timezone(timezone),
        default_language=check_language(default_language, "default_language"),
    )
    session.add(workspace)
    session.flush()
    return workspace


def do_update_workspace(
    session: Session,
    actor: Actor,
    *,
    name: str,
    default_country: str | None,
    timezone: str,
    default_language: str,
    agents_see_unassigned: bool | None = None,
    away_after_minutes: int | None = None,
) -> Workspace:
    """General settings; every value is checked before any is changed (None: left as it is)."""
    actor.require(Permission.MANAGE_WORKSPACE)
    workspace = get_workspace(session, actor.workspace_id)
    errors: dict[str, str] = {}
    checked: dict[str, str | None] = {}
    checks: tuple[tuple[str, Callable[[], str | None]], ...] = (
        ("name", lambda: check_workspace_name(session, name, exclude_id=workspace.id)),
        ("default_country", lambda: check_country(default_country, "default_country") if default_country else None),
        ("timezone", lambda: check_timezone(timezone)),
        ("default_language", lambda: check_language(default_language, "default_language")),
    )
    for field_name, check in checks:
        try:
            checked[field_name] = check()
        except (ValidationFailed, Conflict) as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            errors[field_name] = str(details.get(field_name) or details.get("name") or exc.message)
    if away_after_minutes is not None and not MIN_AWAY_MINUTES <= away_after_minutes <= MAX_AWAY_MINUTES:
        errors["away_after_minutes"] = f"must be between {MIN_AWAY_MINUTES} and {MAX_AWAY_MINUTES} minutes"
    if errors:
        raise ValidationFailed("The workspace settings are not valid.", details=errors)
    if checked["default_language"] not in SUPPORTED_LANGUAGES:
        raise ValidationFailed.field("default_language", f"must be one of {', '.join(SUPPORTED_LANGUAGES)}")
    workspace.name = str(checked["name"])
    workspace.name_key = fold(workspace.name)
    workspace.default_country = checked["default_country"]
    workspace.timezone = str(checked["timezone"])
    workspace.default_language = str(checked["default_language"])
    if agents_see_unassigned is not None:
        workspace.agents_see_unassigned = agents_see_unassigned
    if away_after_minutes is not None:
        workspace.away_after_minutes = away_after_minutes
    session.flush()
    return workspace


def get_workspace(session: Session, workspace_id: int) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("Workspace not found.")
    return workspace


def get_workspace_by_name(session: Session, name: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.name_key == fold(name.strip())))
    if workspace is None:
        raise NotFound(f"No workspace named {name!r}.")
    return workspace


# ----- business hours -----------------------------------------------------------------------


def _version_at(
    session: Session, workspace_id: int, team_id: int | None, at: datetime | None
) -> BusinessHoursVersion | None:
    query = select(BusinessHoursVersion).where(
        BusinessHoursVersion.workspace_id == workspace_id,
        BusinessHoursVersion.team_id.is_(None) if team_id is None else BusinessHoursVersion.team_id == team_id,
    )
    if at is not None:
        query = query.where(BusinessHoursVersion.valid_from <= at)
    order = (BusinessHoursVersion.valid_from.desc(), BusinessHoursVersion.id.desc())
    return session.scalar(query.order_by(*order).limit(1))


def hours_at(session: Session, workspace_id: int, at: datetime, team_id: int | None = None) -> BusinessHours:
    """The hours in force at `at`: the team's own if it had its own then, else the workspace's; before
    any hours were saved, always open. Reports measuring something that happened at `at` use this."""
    if team_id is not None:
        team_version = _version_at(session, workspace_id, team_id, at)
        if team_version is not None and team_version.schedule is not None:
            return parse_hours(team_version.schedule)
    version = _version_at(session, workspace_id, None, at)
    return parse_hours(version.schedule) if version is not None and version.schedule is not None else ALWAYS_OPEN


def hours_history(session: Session, workspace_id: int) -> HoursHistory:
    """Every version of the workspace's and its teams' hours, for reports that measure many intervals
    (`HoursHistory.business_seconds(t0, t1, team_id)`): one query."""
    query = select(BusinessHoursVersion).where(BusinessHoursVersion.workspace_id == workspace_id)
    rows = session.scalars(query.order_by(BusinessHoursVersion.valid_from, BusinessHoursVersion.id))
    return HoursHistory(
        Version(as_utc(row.valid_from), row.team_id, parse_hours(row.schedule) if row.schedule is not None else None)
        for row in rows
    )


def current_hours(session: Session, workspace_id: int, team_id: int | None = None) -> BusinessHours | None:
    """The latest saved hours of the workspace (a disabled schedule in its time zone when none were
    saved), or of a team (None when the team follows the workspace's)."""
    version = _version_at(session, workspace_id, team_id, None)
    if version is not None and version.schedule is not None:
        return parse_hours(version.schedule)
    if team_id is not None:
        return None
    return BusinessHours(timezone=get_workspace(session, workspace_id).timezone, enabled=False)


def check_team_of(session: Session, actor: Actor, team_id: int) -> Team:
    team = session.scalar(select(Team).where(Team.workspace_id == actor.workspace_id, Team.id == team_id))
    if team is None:
        raise NotFound("Team not found.")
    return team


def do_set_business_hours(
    session: Session, actor: Actor, data: Mapping[str, Any], *, team_id: int | None = None
) -> BusinessHours:
    """Checks `data` (BusinessHours.to_dict's form; field paths in the refusal) and saves it as the
    hours from now on; the versions before stay for reports."""
    actor.require(Permission.MANAGE_WORKSPACE)
    if team_id is not None:
        check_team_of(session, actor, team_id)
    hours = parse_hours(data, default_timezone=get_workspace(session, actor.workspace_id).timezone)
    _add_version(session, actor, team_id, hours.to_dict())
    return hours


def do_follow_workspace_hours(session: Session, actor: Actor, team_id: int) -> None:
    """From now on the team has no hours of its own."""
    actor.require(Permission.MANAGE_WORKSPACE)
    check_team_of(session, actor, team_id)
    if current_hours(session, actor.workspace_id, team_id) is not None:
        _add_version(session, actor, team_id, None)


def _add_version(session: Session, actor: Actor, team_id: int | None, schedule: dict[str, Any] | None) -> None:
    session.add(
        BusinessHoursVersion(
            workspace_id=actor.workspace_id,
            team_id=team_id,
            valid_from=utcnow(),
            schedule=schedule,
            created_by_id=actor.user_id,
        )
    )
    session.flush()


# ----- auto-close ---------------------------------------------------------------------------

AUTO_CLOSE_MIN_MINUTES = 30
AUTO_CLOSE_MAX_MINUTES = 14 * 24 * 60
AUTO_CLOSE_RANGE = "must be between 30 minutes and 14 days"


def check_auto_close(minutes: int | None) -> int | None:
    if minutes is not None and not AUTO_CLOSE_MIN_MINUTES <= minutes <= AUTO_CLOSE_MAX_MINUTES:
        raise ValidationFailed.field("auto_close_minutes", AUTO_CLOSE_RANGE)
    return minutes


def do_set_auto_close(session: Session, actor: Actor, minutes: int | None) -> Workspace:
    """Off (None), or close open conversations after this many minutes without a word from the
    contact or a person of the team (conversations/autoclose.py)."""
    actor.require(Permission.MANAGE_WORKSPACE)
    workspace = get_workspace(session, actor.workspace_id)
    workspace.auto_close_minutes = check_auto_close(minutes)
    session.flush()
    return workspace
