"""Business hours as a value, and the pure functions on it that the inbox, workflows and reports share.

A schedule is a time zone, time blocks per weekday (local wall-clock times, whole minutes) and
holidays (local dates, closed all day). An instant is open when its wall-clock time in the schedule's
zone falls in one of its weekday's blocks and its date is no holiday. That one definition decides
every DST question:

- On a spring-forward day the skipped wall times never happen, so a block inside the gap is empty
  that day and a block across it is an hour shorter.
- On a fall-back day the repeated wall times happen twice, so a block across them is an hour longer.

Blocks never cross midnight: 22:00-06:00 is refused. A night shift is two blocks, 22:00-24:00 on one
day and 00:00-06:00 on the next; they touch, so the functions below treat them as one open stretch
(next_closing at 23:00 answers 06:00 the next morning). Keeping each block inside its own date keeps
"which weekday's blocks apply" and "is this date a holiday" unambiguous.

A disabled schedule is "always open". Every function takes and returns aware datetimes (UTC out).
"""

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tertulia.kit.errors import ValidationFailed

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MINUTES_PER_DAY = 24 * 60
MAX_BLOCKS_PER_DAY = 12
MAX_HOLIDAYS = 400
MAX_HOLIDAY_NAME = 100
# How far next_opening / next_closing look ahead before answering "never" (None).
HORIZON = timedelta(days=800)
# Offsets are probed at this step to find a zone's transitions (then bisected to the second); no
# zone changes its offset twice within one step.
_PROBE = timedelta(hours=12)
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

# Static wording, so the pages can translate each message beside its field.
BAD_TIME = "must be a time HH:MM"
END_BEFORE_START = "must end after it starts (a block cannot cross midnight: split it in two)"
OVERLAP = "overlaps another block of the same day"
TOO_MANY_BLOCKS = "at most 12 blocks a day"
BAD_DATE = "must be a date YYYY-MM-DD"
DUPLICATE_HOLIDAY = "is listed twice"
TOO_MANY_HOLIDAYS = "at most 400 holidays"
NAME_TOO_LONG = "must be at most 100 characters"
BAD_ZONE = "is not a known time zone"
UNKNOWN_DAY = "is not a weekday (monday ... sunday)"


@dataclass(frozen=True, order=True)
class Block:
    """Open from `start` to `end` minutes after local midnight (0 <= start < end <= 1440)."""

    start: int
    end: int

    def label(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class Holiday:
    day: date
    name: str = ""


@dataclass(frozen=True)
class BusinessHours:
    timezone: str = "UTC"
    enabled: bool = True
    # Seven tuples of blocks, Monday first, each sorted and without overlaps (parse_hours checks).
    week: tuple[tuple[Block, ...], ...] = field(default_factory=lambda: ((),) * 7)
    holidays: tuple[Holiday, ...] = ()

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def closed_days(self) -> frozenset[date]:
        return frozenset(h.day for h in self.holidays)

    def to_dict(self) -> dict[str, Any]:
        """The stored and API form (the inverse of parse_hours)."""
        return {
            "enabled": self.enabled,
            "timezone": self.timezone,
            "week": {
                name: [{"start": _hhmm(b.start), "end": _hhmm(b.end)} for b in blocks]
                for name, blocks in zip(WEEKDAYS, self.week, strict=True)
            },
            "holidays": [{"date": h.day.isoformat(), "name": h.name} for h in self.holidays],
        }


ALWAYS_OPEN = BusinessHours(enabled=False)


# ----- parsing and validation ----------------------------------------------------------------


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_time(value: object) -> int | None:
    """Minutes after midnight for "HH:MM" (24:00 allowed, as an end), else None."""
    if not isinstance(value, str):
        return None
    match = _TIME.match(value.strip())
    if match is None:
        return None
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    return minutes if minutes <= MINUTES_PER_DAY else None


def parse_hours(data: Mapping[str, Any], *, default_timezone: str = "UTC") -> BusinessHours:
    """A schedule from its dict form, every problem reported at once by field path
    (`week.monday[1].end`, `holidays[0].date`), so a form can show each beside its field."""
    errors: dict[str, str] = {}
    zone_name = data.get("timezone") or default_timezone
    if not isinstance(zone_name, str) or not _known_zone(zone_name):
        errors["timezone"] = BAD_ZONE
    week_data = data.get("week") or {}
    if not isinstance(week_data, Mapping):
        errors["week"] = UNKNOWN_DAY
        week_data = {}
    for key in week_data:
        if key not in WEEKDAYS:
            errors[f"week.{key}"] = UNKNOWN_DAY
    week = tuple(_parse_day(name, week_data.get(name) or [], errors) for name in WEEKDAYS)
    holidays = _parse_holidays(data.get("holidays") or [], errors)
    if errors:
        raise ValidationFailed("The business hours are not valid.", details=errors)
    return BusinessHours(timezone=str(zone_name), enabled=bool(data.get("enabled", True)), week=week, holidays=holidays)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _parse_day(name: str, raw: object, errors: dict[str, str]) -> tuple[Block, ...]:
    path = f"week.{name}"
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        errors[path] = BAD_TIME
        return ()
    if len(raw) > MAX_BLOCKS_PER_DAY:
        errors[path] = TOO_MANY_BLOCKS
        return ()
    blocks: list[tuple[int, Block]] = []
    for index, given in enumerate(raw):
        here = f"{path}[{index}]"
        item = given if isinstance(given, Mapping) else {}
        start, end = parse_time(item.get("start")), parse_time(item.get("end"))
        if start is None or start == MINUTES_PER_DAY:
            errors[f"{here}.start"] = BAD_TIME
        if end is None:
            errors[f"{here}.end"] = BAD_TIME
        if start is None or end is None or start == MINUTES_PER_DAY:
            continue
        if end <= start:
            errors[f"{here}.end"] = END_BEFORE_START
            continue
        blocks.append((index, Block(start, end)))
    # Overlap (touching is fine: 09:00-13:00 and 13:00-17:00): reported at the block written after
    # the one it overlaps, so the message points at the block to change.
    for index, block in blocks:
        if any(
            other_index < index and block.start < other.end and other.start < block.end for other_index, other in blocks
        ):
            errors.setdefault(f"{path}[{index}]", OVERLAP)
    return tuple(sorted(block for _, block in blocks))


def _parse_holidays(raw: object, errors: dict[str, str]) -> tuple[Holiday, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        errors["holidays"] = BAD_DATE
        return ()
    if len(raw) > MAX_HOLIDAYS:
        errors["holidays"] = TOO_MANY_HOLIDAYS
        return ()
    seen: set[date] = set()
    out: list[Holiday] = []
    for index, given in enumerate(raw):
        item = given if isinstance(given, Mapping) else {}
        try:
            day = date.fromisoformat(str(item.get("date", "")).strip())
        except ValueError:
            errors[f"holidays[{index}].date"] = BAD_DATE
            continue
        name = " ".join(str(item.get("name") or "").split())
        if len(name) > MAX_HOLIDAY_NAME:
            errors[f"holidays[{index}].name"] = NAME_TOO_LONG
        if day in seen:
            errors[f"holidays[{index}].date"] = DUPLICATE_HOLIDAY
        seen.add(day)
        out.append(Holiday(day, name))
    return tuple(sorted(out, key=lambda h: h.day))


# ----- the functions ------------------------------------------------------------------------


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("business hours need aware datetimes")
    return at.astimezone(UTC)


def is_open(hours: BusinessHours, at: datetime) -> bool:
    if not hours.enabled:
        return True
    wall = _aware(at).astimezone(hours.zone)
    if wall.date() in hours.closed_days:
        return False
    seconds = wall.hour * 3600 + wall.minute * 60 + wall.second + wall.microsecond / 1e6
    return any(b.start * 60 <= seconds < b.end * 60 for b in hours.week[wall.weekday()])


def open_intervals(hours: BusinessHours, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The open stretches within [start, end), in UTC, in order; touching stretches are merged."""
    t0, t1 = _aware(start), _aware(end)
    if t1 <= t0:
        return []
    if not hours.enabled:
        return [(t0, t1)]
    raw: list[tuple[datetime, datetime]] = []
    for a, b, offset in _constant_offset_pieces(hours.zone, t0, t1):
        # Within a piece the wall clock is UTC plus one offset: map the blocks over and back.
        wall_a, wall_b = (a + offset).replace(tzinfo=None), (b + offset).replace(tzinfo=None)
        day = wall_a.date()
        while day <= wall_b.date():
            if day not in hours.closed_days:
                midnight = datetime.combine(day, time())
                for block in hours.week[day.weekday()]:
                    s = max(midnight + timedelta(minutes=block.start), wall_a)
                    e = min(midnight + timedelta(minutes=block.end), wall_b)
                    if s < e:
                        raw.append(((s - offset).replace(tzinfo=UTC), (e - offset).replace(tzinfo=UTC)))
            day += timedelta(days=1)
    return _merge(sorted(raw))


def open_time(hours: BusinessHours, start: datetime, end: datetime) -> timedelta:
    """How much of [start, end) is open (zero when end <= start). Additive: for a <= b <= c,
    open_time(a, c) == open_time(a, b) + open_time(b, c)."""
    return sum((e - s for s, e in open_intervals(hours, start, end)), timedelta())


def business_seconds(hours: BusinessHours, start: datetime, end: datetime) -> float:
    """open_time in seconds: a report's response time "in business hours"."""
    return open_time(hours, start, end).total_seconds()


def next_opening(hours: BusinessHours, at: datetime) -> datetime | None:
    """`at` itself when open then, else the first open instant after it; None if it never opens
    within HORIZON (every weekday empty, or a run of holidays longer than that)."""
    t0 = _aware(at)
    if is_open(hours, t0):
        return t0
    span = timedelta(days=8)
    while True:
        stretches = open_intervals(hours, t0, t0 + span)
        if stretches:
            return stretches[0][0]
        if span >= HORIZON:
            return None
        span = min(span * 4, HORIZON)


def next_closing(hours: BusinessHours, at: datetime) -> datetime | None:
    """`at` itself when closed then, else the first closed instant after it; None if it stays open
    through HORIZON (a disabled schedule, or open around the clock)."""
    t0 = _aware(at)
    if not is_open(hours, t0):
        return t0
    if not hours.enabled:
        return None
    span = timedelta(days=8)
    while True:
        first = open_intervals(hours, t0, t0 + span)[0]
        if first[1] < t0 + span:
            return first[1]
        if span >= HORIZON:
            return None
        span = min(span * 4, HORIZON)


def closed_period_start(hours: BusinessHours, at: datetime) -> datetime | None:
    """When the closed stretch containing `at` began (None when open at `at`, or closed for all of
    the HORIZON before it). With next_opening it names one closed period."""
    t0 = _aware(at)
    if is_open(hours, t0):
        return None
    span = timedelta(days=8)
    while True:
        stretches = open_intervals(hours, t0 - span, t0)
        if stretches:
            return stretches[-1][1]
        if span >= HORIZON:
            return None
        span = min(span * 4, HORIZON)


def _merge(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for s, e in intervals:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _offset(zone: tzinfo, at: datetime) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


@lru_cache(maxsize=4096)
def _transition_after(zone: tzinfo, lo_second: int, hi_second: int) -> int:
    """The first whole second in (lo, hi] whose offset differs from lo's (offsets change on whole
    seconds); the caller knows hi's differs."""
    before = _offset(zone, datetime.fromtimestamp(lo_second, UTC))
    while hi_second - lo_second > 1:
        mid = (lo_second + hi_second) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == before:
            lo_second = mid
        else:
            hi_second = mid
    return hi_second


def _constant_offset_pieces(zone: tzinfo, t0: datetime, t1: datetime) -> list[tuple[datetime, datetime, timedelta]]:
    """[t0, t1) cut where the zone's UTC offset changes."""
    pieces: list[tuple[datetime, datetime, timedelta]] = []
    start, offset, probe = t0, _offset(zone, t0), t0
    while probe < t1:
        step = min(probe + _PROBE, t1)
        if _offset(zone, step) == offset:
            probe = step
            continue
        change = datetime.fromtimestamp(
            _transition_after(zone, math.floor(probe.timestamp()), math.ceil(step.timestamp())), UTC
        )
        if change >= t1:
            break
        if change > start:
            pieces.append((start, change, offset))
        start, offset, probe = change, _offset(zone, change), change
    pieces.append((start, t1, offset))
    return pieces


# ----- history ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """Hours saved at `valid_from` for the workspace (team_id None) or a team; `hours` None: the team
    follows the workspace's hours from then on."""

    valid_from: datetime
    team_id: int | None
    hours: BusinessHours | None


class HoursHistory:
    """Every version of a workspace's hours, in memory: what a report over many conversations loads
    once (workspaces.service.hours_history) instead of asking the database per conversation."""

    def __init__(self, versions: Iterable[Version]) -> None:
        self._versions: dict[int | None, list[Version]] = {}
        for version in sorted(versions, key=lambda v: v.valid_from):
            self._versions.setdefault(version.team_id, []).append(version)

    def _latest(self, team_id: int | None, at: datetime) -> Version | None:
        found = None
        for version in self._versions.get(team_id, []):
            if version.valid_from > at:
                break
            found = version
        return found

    def at(self, at: datetime, team_id: int | None = None) -> BusinessHours:
        """The hours in force at `at`: the team's own then, else the workspace's; always open before
        any were saved (the same answer as workspaces.service.hours_at)."""
        t = _aware(at)
        if team_id is not None:
            own = self._latest(team_id, t)
            if own is not None and own.hours is not None:
                return own.hours
        workspace = self._latest(None, t)
        return workspace.hours if workspace is not None and workspace.hours is not None else ALWAYS_OPEN

    def open_time(self, start: datetime, end: datetime, team_id: int | None = None) -> timedelta:
        """Open time in [start, end), each part under the hours in force then: a change of hours
        between start and end applies from its valid_from on."""
        t0, t1 = _aware(start), _aware(end)
        if t1 <= t0:
            return timedelta()
        cuts = sorted(
            {v.valid_from for key in {None, team_id} for v in self._versions.get(key, []) if t0 < v.valid_from < t1}
        )
        total = timedelta()
        for a, b in itertools.pairwise([t0, *cuts, t1]):
            total += open_time(self.at(a, team_id), a, b)
        return total

    def business_seconds(self, start: datetime, end: datetime, team_id: int | None = None) -> float:
        return self.open_time(start, end, team_id).total_seconds()
