"""Time rules shared by the compiler and the evaluator, so both compare against the same bounds.

- "ago" is measured from `now`: minutes and hours are exact durations; days, weeks and months are
  calendar arithmetic on the wall clock of the workspace's time zone ("1 month ago" on 31 March is
  the last day of February at the same time of day).
- `on`, `before`, `after` and `between` take calendar dates, read in the workspace's time zone.
- Every date condition becomes a `Range` over the stored representation: an aware UTC datetime for
  contact columns, the ISO text ('YYYY-MM-DDTHH:MM:SSZ' or 'YYYY-MM-DD') for custom values, whose
  string order is time order.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from tertulia.segments.language import Ago, Condition, FieldRef

CUSTOM_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class EvalContext:
    """Everything a filter's meaning depends on besides the contact."""

    workspace_id: int
    timezone: tzinfo
    now: datetime
    # The user asking: `assignee is "me"`. None (an API token, a workflow) matches no one.
    me_user_id: int | None = None


@dataclass(frozen=True)
class Range:
    low: Any = None
    low_inclusive: bool = True
    high: Any = None
    high_inclusive: bool = False


def shift_months(moment: datetime, months: int) -> datetime:
    """Calendar months back (negative) or forward, clamping the day to the month's end."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def ago_instant(ctx: EvalContext, ago: Ago) -> datetime:
    now = ctx.now.astimezone(UTC)
    if ago.unit == "minutes":
        return now - timedelta(minutes=ago.amount)
    if ago.unit == "hours":
        return now - timedelta(hours=ago.amount)
    local = now.astimezone(ctx.timezone)
    if ago.unit == "months":
        shifted = shift_months(local, -ago.amount)
    else:
        # Arithmetic on an aware datetime keeps the wall-clock time; the offset is recomputed below.
        shifted = local - timedelta(days=ago.amount * (7 if ago.unit == "weeks" else 1))
    return shifted.astimezone(UTC)


def day_start(ctx: EvalContext, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ctx.timezone).astimezone(UTC)


def _stored(field: FieldRef, moment: datetime) -> Any:
    if field.source == "column":
        return moment
    return moment.strftime(CUSTOM_DATETIME_FORMAT)


def date_range(condition: Condition, ctx: EvalContext) -> Range:
    """The range of stored values a before/after/on/between/ago condition accepts."""
    field, operator, value = condition.field, condition.operator, condition.value
    assert field is not None
    if operator in ("less_than_ago", "more_than_ago"):
        instant = ago_instant(ctx, value)
        bound: Any
        if field.kind == "date":
            bound = instant.astimezone(ctx.timezone).date().isoformat()
        else:
            bound = _stored(field, instant)
        if operator == "less_than_ago":
            return Range(low=bound, low_inclusive=False)
        return Range(high=bound, high_inclusive=False)
    if field.kind == "date":
        if operator == "before":
            return Range(high=value.isoformat(), high_inclusive=False)
        if operator == "after":
            return Range(low=value.isoformat(), low_inclusive=False)
        if operator == "on":
            return Range(low=value.isoformat(), high=value.isoformat(), high_inclusive=True)
        first, last = value
        return Range(low=first.isoformat(), high=last.isoformat(), high_inclusive=True)
    one_day = timedelta(days=1)
    if operator == "before":
        return Range(high=_stored(field, day_start(ctx, value)))
    if operator == "after":
        return Range(low=_stored(field, day_start(ctx, value + one_day)))
    if operator == "on":
        return Range(low=_stored(field, day_start(ctx, value)), high=_stored(field, day_start(ctx, value + one_day)))
    first, last = value
    return Range(low=_stored(field, day_start(ctx, first)), high=_stored(field, day_start(ctx, last + one_day)))
