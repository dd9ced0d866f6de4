"""Workspaces: creation (with its owner) and general settings."""

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.text import fold
from tertulia.users.permissions import Actor, Permission
from tertulia.workspaces.models import Workspace

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
