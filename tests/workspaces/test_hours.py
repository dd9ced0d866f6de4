"""The business-hours functions: worked examples (DST days included) and properties checked against a
naive minute-by-minute twin on random schedules."""

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertulia.kit.errors import ValidationFailed
from tertulia.workspaces.hours import (
    ALWAYS_OPEN,
    END_BEFORE_START,
    OVERLAP,
    WEEKDAYS,
    Block,
    BusinessHours,
    Holiday,
    HoursHistory,
    Version,
    business_seconds,
    closed_period_start,
    is_open,
    next_closing,
    next_opening,
    open_intervals,
    open_time,
    parse_hours,
)

ZONES = ("UTC", "Europe/Madrid", "America/Mexico_City", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu")


def weekdays(blocks: list[tuple[str, str]], days: tuple[str, ...] = WEEKDAYS[:5]) -> dict[str, list[dict[str, str]]]:
    return {day: [{"start": s, "end": e} for s, e in blocks] for day in days}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


OFFICE = parse_hours({"timezone": "Europe/Madrid", "week": weekdays([("09:00", "14:00"), ("16:00", "19:00")])})


def test_open_and_closed_inside_and_between_blocks() -> None:
    # Thursday 26 Nov 2026, Madrid is UTC+1.
    assert is_open(OFFICE, utc(2026, 11, 26, 8, 0))  # 09:00 local
    assert not is_open(OFFICE, utc(2026, 11, 26, 7, 59))
    assert not is_open(OFFICE, utc(2026, 11, 26, 13, 0))  # 14:00 local: the end is exclusive
    assert next_opening(OFFICE, utc(2026, 11, 26, 13, 30)) == utc(2026, 11, 26, 15, 0)
    assert next_closing(OFFICE, utc(2026, 11, 26, 10, 0)) == utc(2026, 11, 26, 13, 0)
    # Friday evening: next opening is Monday 09:00.
    assert next_opening(OFFICE, utc(2026, 11, 27, 18, 0)) == utc(2026, 11, 30, 8, 0)
    assert closed_period_start(OFFICE, utc(2026, 11, 29, 12, 0)) == utc(2026, 11, 27, 18, 0)
    assert business_seconds(OFFICE, utc(2026, 11, 26, 0, 0), utc(2026, 11, 27, 0, 0)) == 8 * 3600


def test_dst_days_follow_the_wall_clock() -> None:
    # Madrid springs forward on 29 March 2026 at 02:00 (to 03:00) and falls back on 25 October at 03:00.
    night = parse_hours({"timezone": "Europe/Madrid", "week": weekdays([("00:00", "06:00")], ("sunday",))})
    assert business_seconds(night, utc(2026, 3, 28), utc(2026, 3, 30)) == 5 * 3600
    assert business_seconds(night, utc(2026, 10, 24), utc(2026, 10, 26)) == 7 * 3600
    gap = parse_hours({"timezone": "Europe/Madrid", "week": weekdays([("02:00", "03:00")], ("sunday",))})
    assert open_intervals(gap, utc(2026, 3, 28), utc(2026, 3, 30)) == []
    # Next opening skips the Sunday with no 02:00 and lands a week later (UTC+2 by then).
    assert next_opening(gap, utc(2026, 3, 28)) == utc(2026, 4, 5, 0, 0)


def test_touching_blocks_across_midnight_are_one_stretch() -> None:
    shift = parse_hours(
        {
            "timezone": "America/Mexico_City",
            "week": {"monday": [{"start": "22:00", "end": "24:00"}], "tuesday": [{"start": "00:00", "end": "06:00"}]},
        }
    )
    # Monday 30 Nov 2026 23:00 in Mexico City (UTC-6) is 05:00 UTC Tuesday.
    assert next_closing(shift, utc(2026, 12, 1, 5, 0)) == utc(2026, 12, 1, 12, 0)


def test_holidays_close_the_whole_day_and_disabled_is_always_open() -> None:
    hours = parse_hours(
        {
            "timezone": "UTC",
            "week": weekdays([("09:00", "17:00")]),
            "holidays": [{"date": "2026-12-25", "name": "Navidad"}],
        }
    )
    assert hours.holidays == (Holiday(date(2026, 12, 25), "Navidad"),)
    assert not is_open(hours, utc(2026, 12, 25, 10))
    assert next_opening(hours, utc(2026, 12, 25, 10)) == utc(2026, 12, 28, 9)
    assert is_open(ALWAYS_OPEN, utc(2026, 12, 25, 3))
    assert next_closing(ALWAYS_OPEN, utc(2026, 12, 25, 3)) is None
    assert next_opening(parse_hours({"timezone": "UTC"}), utc(2026, 1, 1)) is None


def test_refusals_name_the_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_hours(
            {
                "timezone": "Mars/Olympus",
                "week": {
                    "monday": [{"start": "09:00", "end": "13:00"}, {"start": "12:00", "end": "15:00"}],
                    "tuesday": [{"start": "22:00", "end": "06:00"}, {"start": "9", "end": "10:00"}],
                    "funday": [],
                },
                "holidays": [{"date": "2026-02-30"}, {"date": "2026-01-01"}, {"date": "2026-01-01"}],
            }
        )
    assert caught.value.details == {
        "timezone": "is not a known time zone",
        "week.funday": "is not a weekday (monday ... sunday)",
        "week.monday[1]": OVERLAP,
        "week.tuesday[0].end": END_BEFORE_START,
        "week.tuesday[1].start": "must be a time HH:MM",
        "holidays[0].date": "must be a date YYYY-MM-DD",
        "holidays[2].date": "is listed twice",
    }
    # Touching blocks are fine, and 24:00 is an end.
    parse_hours({"week": {"monday": [{"start": "09:00", "end": "13:00"}, {"start": "13:00", "end": "24:00"}]}})


def test_round_trip_through_the_stored_form() -> None:
    assert parse_hours(OFFICE.to_dict()) == OFFICE


# ----- properties --------------------------------------------------------------------------

minute_marks = st.integers(0, 48).map(lambda n: n * 30)


@st.composite
def schedules(draw: st.DrawFn) -> BusinessHours:
    week = []
    for _ in range(7):
        cuts = sorted(set(draw(st.lists(minute_marks, max_size=6))))
        blocks = tuple(Block(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2))
        week.append(blocks)
    holidays = tuple(
        Holiday(d) for d in sorted(set(draw(st.lists(st.dates(date(2026, 3, 20), date(2026, 4, 10)), max_size=3))))
    )
    return BusinessHours(
        timezone=draw(st.sampled_from(ZONES)),
        enabled=draw(st.booleans()) or draw(st.booleans()),
        week=tuple(week),
        holidays=holidays,
    )


# Across the USA's (8 March) and Europe's (29 March) spring changes and Lord Howe's half-hour autumn change (5 April).
instants = st.integers(0, 36 * 24 * 60).map(lambda m: utc(2026, 3, 5) + timedelta(minutes=m))


def naive_seconds(hours: BusinessHours, start: datetime, end: datetime) -> float:
    total, at = 0, start
    while at < end:
        total += 60 if is_open(hours, at) else 0
        at += timedelta(minutes=1)
    return float(total)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), instants, st.integers(0, 4 * 24 * 60))
def test_fast_sum_agrees_with_a_minute_by_minute_count(hours: BusinessHours, start: datetime, minutes: int) -> None:
    end = start + timedelta(minutes=minutes)
    assert business_seconds(hours, start, end) == naive_seconds(hours, start, end)


@settings(max_examples=200, deadline=None)
@given(schedules(), instants, instants, instants)
def test_open_time_is_additive(hours: BusinessHours, a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    assert open_time(hours, a, c) == open_time(hours, a, b) + open_time(hours, b, c)


@settings(max_examples=200, deadline=None)
@given(schedules(), instants)
def test_next_opening_and_closing_agree_with_is_open(hours: BusinessHours, at: datetime) -> None:
    opening, closing = next_opening(hours, at), next_closing(hours, at)
    if is_open(hours, at):
        assert opening == at
        if closing is not None:
            assert closing > at
            assert not is_open(hours, closing)
            assert is_open(hours, closing - timedelta(minutes=1))
            assert open_time(hours, at, closing) == closing - at
    else:
        assert closing == at
        if opening is not None:
            assert opening > at
            assert is_open(hours, opening)
            assert not is_open(hours, opening - timedelta(minutes=1))
            assert open_time(hours, at, opening) == timedelta()
            assert closed_period_start(hours, opening - timedelta(minutes=1)) == closed_period_start(hours, at)


@settings(max_examples=200, deadline=None)
@given(schedules(), instants, st.integers(1, 3 * 24 * 60))
def test_intervals_are_open_inside_and_closed_between(hours: BusinessHours, start: datetime, minutes: int) -> None:
    end = start + timedelta(minutes=minutes)
    stretches = open_intervals(hours, start, end)
    for s, e in stretches:
        assert start <= s < e <= end
        assert is_open(hours, s)
        assert is_open(hours, e - timedelta(minutes=1))
    for (_, e1), (s2, _) in itertools.pairwise(stretches):
        assert e1 < s2
        assert not is_open(hours, e1)


@settings(max_examples=100, deadline=None)
@given(schedules(), schedules(), instants, instants, instants, instants)
def test_history_is_additive_and_uses_the_hours_then(
    first: BusinessHours, second: BusinessHours, change: datetime, a: datetime, b: datetime, c: datetime
) -> None:
    history = HoursHistory([Version(utc(2026, 3, 1), None, first), Version(change, None, second)])
    a, b, c = sorted((a, b, c))
    assert history.open_time(a, c) == history.open_time(a, b) + history.open_time(b, c)
    before, after = min(a, change), max(c, change)
    assert history.open_time(before, change) == open_time(first, before, change)
    assert history.open_time(change, after) == open_time(second, change, after)
    assert history.at(utc(2026, 2, 1)) == ALWAYS_OPEN
