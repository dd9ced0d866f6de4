"""The business seconds the reports store beside each duration (`HoursHistory.business_seconds`, which
the rollups consumer calls): worked examples, and random schedules, histories and instants (to the
second, across spring and autumn DST changes, weekends, nights and holidays) against a brute-force
twin that walks the interval minute by minute and decides each minute on its own."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertulia.workspaces.hours import ALWAYS_OPEN, Block, BusinessHours, Holiday, HoursHistory, Version, parse_hours

ZONES = ("UTC", "Europe/Madrid", "America/New_York", "America/Mexico_City", "Australia/Lord_Howe", "Asia/Kathmandu")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def hours_of(
    zone: str, blocks: list[tuple[str, str]], days: tuple[str, ...] = WEEKDAYS, **more: object
) -> BusinessHours:
    return parse_hours(
        {"timezone": zone, "week": {day: [{"start": s, "end": e} for s, e in blocks] for day in days}, **more}
    )


def only(hours: BusinessHours) -> HoursHistory:
    return HoursHistory([Version(utc(2020, 1, 1), None, hours)])


# ----- worked examples ------------------------------------------------------------------------


def test_friday_evening_to_monday_morning_is_ten_minutes() -> None:
    zone = "America/Mexico_City"
    history = only(hours_of(zone, [("09:00", "19:00")]))
    assert history.business_seconds(local("2026-11-06 18:55", zone), local("2026-11-09 09:05", zone)) == 600
    # Within one open day, the calendar time; wholly outside, nothing.
    assert history.business_seconds(local("2026-11-09 10:00", zone), local("2026-11-09 10:00:42", zone)) == 42
    assert history.business_seconds(local("2026-11-07 10:00", zone), local("2026-11-08 18:00", zone)) == 0
    # Backwards or empty: zero.
    assert history.business_seconds(local("2026-11-09 10:00", zone), local("2026-11-09 09:00", zone)) == 0


def test_a_night_shift_across_midnight_and_a_holiday() -> None:
    zone = "Europe/Madrid"
    night = parse_hours(
        {
            "timezone": zone,
            "week": {
                day: [{"start": "00:00", "end": "06:00"}, {"start": "22:00", "end": "24:00"}]
                for day in (*WEEKDAYS, "saturday", "sunday")
            },
            "holidays": [{"date": "2026-12-25", "name": "Navidad"}],
        }
    )
    history = only(night)
    # 23:00 to 05:00 the next day: six hours, all open.
    assert history.business_seconds(local("2026-12-01 23:00", zone), local("2026-12-02 05:00", zone)) == 6 * 3600
    # 23:00 on Christmas Eve to 07:00 on Boxing Day: 1 h on the 24th, the 25th closed, 6 h on the 26th.
    assert history.business_seconds(local("2026-12-24 23:00", zone), local("2026-12-26 07:00", zone)) == 7 * 3600


def test_dst_days_are_23_and_25_hours_long() -> None:
    zone = "Europe/Madrid"
    every_day = hours_of(zone, [("00:00", "24:00")], (*WEEKDAYS, "saturday", "sunday"))
    history = only(every_day)
    spring = history.business_seconds(local("2026-03-29 00:00", zone), local("2026-03-30 00:00", zone))
    autumn = history.business_seconds(local("2026-10-25 00:00", zone), local("2026-10-26 00:00", zone))
    assert (spring, autumn) == (23 * 3600, 25 * 3600)
    # 02:30 on the spring day does not exist: a 02:00-03:00 block is empty that day, an hour long the
    # next Sunday; on the autumn day it happens twice, so it is two hours long.
    early = hours_of(zone, [("02:00", "03:00")], ("sunday",))
    assert only(early).business_seconds(local("2026-03-29 00:00", zone), local("2026-03-30 00:00", zone)) == 0
    assert only(early).business_seconds(local("2026-04-05 00:00", zone), local("2026-04-06 00:00", zone)) == 3600
    assert only(early).business_seconds(local("2026-10-25 00:00", zone), local("2026-10-26 00:00", zone)) == 7200


def test_the_hours_in_force_during_each_part_count() -> None:
    zone = "America/Mexico_City"
    office = hours_of(zone, [("09:00", "19:00")])
    around_the_clock = hours_of(zone, [("00:00", "24:00")], (*WEEKDAYS, "saturday", "sunday"))
    change = local("2026-11-07 12:00", zone)  # Saturday noon
    history = HoursHistory([Version(utc(2026, 1, 1), None, office), Version(change, None, around_the_clock)])
    # Friday 18:55-19:00 open, closed until Saturday noon, then open until Monday 09:05.
    expected = 5 * 60 + (12 + 24 + 9) * 3600 + 5 * 60
    assert history.business_seconds(local("2026-11-06 18:55", zone), local("2026-11-09 09:05", zone)) == expected
    # A team with hours of its own uses them; one that follows the workspace (None) does not.
    team = HoursHistory(
        [
            Version(utc(2026, 1, 1), None, office),
            Version(utc(2026, 1, 1), 7, around_the_clock),
            Version(change, 7, None),
        ]
    )
    start, end = local("2026-11-06 18:55", zone), local("2026-11-09 09:05", zone)
    assert team.business_seconds(start, end, 7) == 17 * 3600 + 5 * 60 + 5 * 60
    assert team.business_seconds(start, end) == 600
    # Before any hours were saved, always open.
    assert HoursHistory([]).business_seconds(start, end) == (end - start).total_seconds()


# ----- the brute-force twin -------------------------------------------------------------------


def _open_then(hours: BusinessHours, at: datetime) -> bool:
    """The definition, written again: the wall-clock minute in the schedule's zone falls in one of
    that weekday's blocks, and the date is no holiday."""
    if not hours.enabled:
        return True
    wall = at.astimezone(ZoneInfo(hours.timezone))
    if wall.date() in {h.day for h in hours.holidays}:
        return False
    minute = wall.hour * 60 + wall.minute
    return any(block.start <= minute < block.end for block in hours.week[wall.weekday()])


def _in_force(versions: list[Version], at: datetime, team_id: int | None) -> BusinessHours:
    def latest(owner: int | None) -> Version | None:
        found = [v for v in versions if v.team_id == owner and v.valid_from <= at]
        return max(found, key=lambda v: v.valid_from) if found else None

    own = latest(team_id) if team_id is not None else None
    if own is not None and own.hours is not None:
        return own.hours
    workspace = latest(None)
    return workspace.hours if workspace is not None and workspace.hours is not None else ALWAYS_OPEN


def brute_force(versions: list[Version], start: datetime, end: datetime, team_id: int | None) -> float:
    """Every UTC minute that overlaps [start, end), decided at its first second (the zones' offsets,
    the blocks and the version changes are all whole minutes, so a minute is open or closed
    throughout), counted for the part of it inside the interval."""
    total = 0.0
    minute = start.replace(second=0, microsecond=0)
    while minute < end:
        following = minute + timedelta(minutes=1)
        inside = (min(following, end) - max(minute, start)).total_seconds()
        if inside > 0 and _open_then(_in_force(versions, minute, team_id), minute):
            total += inside
        minute = following
    return total


half_hours = st.integers(0, 48).map(lambda n: n * 30)


@st.composite
def schedules(draw: st.DrawFn) -> BusinessHours:
    week = []
    for _ in range(7):
        cuts = sorted(set(draw(st.lists(half_hours, max_size=6))))
        week.append(tuple(Block(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)))
    days = st.dates(date(2026, 3, 1), date(2026, 4, 20)) | st.dates(date(2026, 10, 15), date(2026, 11, 15))
    holidays = tuple(Holiday(d) for d in sorted(set(draw(st.lists(days, max_size=3)))))
    return BusinessHours(
        timezone=draw(st.sampled_from(ZONES)),
        enabled=draw(st.booleans()) or draw(st.booleans()),
        week=tuple(week),
        holidays=holidays,
    )


# Spring (USA 8 March, Europe 29 March, Lord Howe 5 April) and autumn (Lord Howe 4 October, Europe
# 25 October, USA 1 November), to the second: half the instants fall in the three days before one of
# those changes, so most intervals cross it.
BASES = (utc(2026, 3, 4), utc(2026, 10, 1))
CHANGES = tuple(
    utc(*day) for day in ((2026, 3, 8), (2026, 3, 29), (2026, 4, 5), (2026, 10, 4), (2026, 10, 25), (2026, 11, 1))
)
anywhere = st.tuples(st.sampled_from(BASES), st.integers(0, 40 * 86400)).map(lambda p: p[0] + timedelta(seconds=p[1]))
near_a_change = st.tuples(st.sampled_from(CHANGES), st.integers(-3 * 86400, 86400)).map(
    lambda p: p[0] + timedelta(seconds=p[1])
)
instants = anywhere | near_a_change
whole_minutes = st.tuples(st.sampled_from(BASES), st.integers(0, 40 * 1440)).map(
    lambda p: p[0] + timedelta(minutes=p[1])
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), instants, st.integers(0, 4 * 86400))
def test_business_seconds_agree_with_the_brute_force_twin(hours: BusinessHours, start: datetime, span: int) -> None:
    end = start + timedelta(seconds=span)
    versions = [Version(utc(2020, 1, 1), None, hours)]
    assert HoursHistory(versions).business_seconds(start, end) == brute_force(versions, start, end, None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedules(),
    schedules(),
    st.one_of(st.none(), schedules()),
    whole_minutes,
    whole_minutes,
    instants,
    st.integers(0, 3 * 86400),
    st.sampled_from([None, 7]),
)
def test_a_history_with_team_hours_agrees_with_the_brute_force_twin(
    first: BusinessHours,
    second: BusinessHours,
    team_hours: BusinessHours | None,
    change: datetime,
    team_change: datetime,
    start: datetime,
    span: int,
    team_id: int | None,
) -> None:
    """The workspace's hours change once; a team gets hours of its own (or goes back to following
    the workspace's, None) at another moment."""
    end = start + timedelta(seconds=span)
    versions = [
        Version(change - timedelta(days=30), None, first),
        Version(change, None, second),
        Version(team_change, 7, team_hours),
    ]
    assert HoursHistory(versions).business_seconds(start, end, team_id) == brute_force(versions, start, end, team_id)
