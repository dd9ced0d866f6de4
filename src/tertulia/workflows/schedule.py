"""The date & time step's question, "is now inside?", as pure functions over its config.

Three kinds of "inside":
- business hours: `workspaces.hours.is_open` on the schedule the runner hands the engine (a team's
  own hours, else the workspace's), in that schedule's time zone, holidays included;
- a date range: local wall-clock time in the step's zone (the workspace's unless it names one)
  from `start` (included) to `end`: a date alone covers that whole day, a date and time is the
  first moment outside;
- weekly windows: days of the week with a local start and end time each (the end later the same
  day, as business-hours blocks are: a night is two windows).

The wall clock decides, as it does for business hours: on a DST change a window covers the local
times that happen that day.
"""

from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tertulia.workspaces import hours as business

WEEKDAYS = business.WEEKDAYS
DATE_FORMATS = (("%Y-%m-%d %H:%M", False), ("%Y-%m-%dT%H:%M", False), ("%Y-%m-%d", True))


def parse_moment(text: str) -> tuple[datetime, bool] | None:
    """(the naive local moment, whether it is a whole day) for "YYYY-MM-DD[ HH:MM]"; None if neither."""
    for pattern, whole_day in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), pattern), whole_day  # noqa: DTZ007 - local wall time
        except ValueError:
            continue
    return None


def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check(config: Any) -> dict[str, str]:
    """Errors of a DateTimeConfig by field path below the config (`windows[0].end`)."""
    errors: dict[str, str] = {}
    mode = config.mode
    if config.timezone is not None and not known_zone(config.timezone):
        errors["timezone"] = "is not a known time zone"
    if mode != "business_hours" and config.team_id is not None:
        errors["team_id"] = "only business hours belong to a team"
    if mode == "business_hours" and config.timezone is not None:
        errors["timezone"] = "business hours have their own time zone"
    if mode != "date_range":
        for name in ("start", "end"):
            if getattr(config, name) is not None:
                errors[name] = "only a date range has a start and an end"
    if mode != "weekly" and config.windows:
        errors["windows"] = "only weekly windows have windows"
    if mode == "date_range":
        parsed: dict[str, tuple[datetime, bool]] = {}
        for name in ("start", "end"):
            value = getattr(config, name)
            if value is None:
                continue
            moment = parse_moment(value)
            if moment is None:
                errors[name] = "a date YYYY-MM-DD or a date and time YYYY-MM-DD HH:MM"
            else:
                parsed[name] = moment
        if config.start is None and config.end is None:
            errors["start"] = "give a start, an end, or both"
        if "start" in parsed and "end" in parsed and _end_of(parsed["end"]) <= parsed["start"][0]:
            errors["end"] = "must be after the start"
    if mode == "weekly":
        if not config.windows:
            errors["windows"] = "add at least one window"
        for index, window in enumerate(config.windows):
            start, end = business.parse_time(window.start), business.parse_time(window.end)
            if start is None or start >= business.MINUTES_PER_DAY:
                errors[f"windows[{index}].start"] = business.BAD_TIME
            if end is None:
                errors[f"windows[{index}].end"] = business.BAD_TIME
            elif start is not None and end <= start:
                errors[f"windows[{index}].end"] = business.END_BEFORE_START
            if len(set(window.days)) != len(window.days):
                errors[f"windows[{index}].days"] = "a day is listed twice"
    return errors


def _end_of(end: tuple[datetime, bool]) -> datetime:
    """The first local moment after a range ending at `end`."""
    moment, whole_day = end
    return moment + timedelta(days=1) if whole_day else moment


def inside(config: Any, now: datetime, zone: tzinfo, hours: business.BusinessHours | None) -> bool:
    """Whether `now` (aware) is inside the step's hours, range or windows. `zone` is the time zone
    of a range or windows (the step's own or the workspace's); `hours` the business hours."""
    if config.mode == "business_hours":
        return business.is_open(hours or business.ALWAYS_OPEN, now)
    local = now.astimezone(zone).replace(tzinfo=None)
    if config.mode == "date_range":
        start = parse_moment(config.start) if config.start is not None else None
        end = parse_moment(config.end) if config.end is not None else None
        if start is not None and local < start[0]:
            return False
        return not (end is not None and local >= _end_of(end))
    weekday = WEEKDAYS[local.weekday()]
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    for window in config.windows:
        start_minute, end_minute = business.parse_time(window.start), business.parse_time(window.end)
        if start_minute is None or end_minute is None or weekday not in window.days:
            continue
        if start_minute * 60 <= seconds < end_minute * 60:
            return True
    return False


def zone_of(config: Any, workspace_zone: tzinfo) -> tzinfo:
    return ZoneInfo(config.timezone) if config.timezone else workspace_zone
