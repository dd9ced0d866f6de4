"""Reports read from the rollups: ranges, filters, who may see what, and each report's tables.

Every report is a set of tables ({"columns": [...], "rows": [[...], ...]}): the page draws its charts
from them, shows them as text tables, and the CSV download of a chart is the same table, so the
numbers are the same by construction.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from tertulia.broadcasts import repository as broadcasts_repo
from tertulia.broadcasts.models import Broadcast, RecipientState
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.contacts.import_models import ImportJob
from tertulia.contacts.models import Contact, Tag
from tertulia.conversations.models import ClosingCategory, Conversation, SenderKind
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.kit.text import name_key
from tertulia.reports import histogram, repository, rollups
from tertulia.reports.models import LABELLED_METRICS, NONE
from tertulia.reports.repository import Cell, Filters
from tertulia.reports.rollups import ASSIGNMENT_SOURCES, CLOSING_SOURCES, CONTACT_SOURCES, SENDER_KINDS, SOURCES
from tertulia.users.models import ActivityStatus, Membership, StatusPeriod, Team, TeamMember, User
from tertulia.users.permissions import Actor, Permission
from tertulia.workspaces.models import BusinessHoursVersion, Workspace

PRESETS = ("today", "yesterday", "last_7_days", "last_14_days", "last_30_days", "this_month", "last_month", "custom")
MAX_DAYS = 366
REPORTS = (
    "conversations",
    "responses",
    "messages",
    "resolutions",
    "assignments",
    "contacts",
    "users",
    "leaderboard",
    "broadcasts",
)
# The reports that show times, where the business-hours toggle applies (the others count things).
TIMED_REPORTS = ("conversations", "responses", "resolutions", "assignments", "users", "leaderboard")
# The reports a contact tag filters: every number of theirs about a conversation has items
# (rollups.ITEM_METRICS), which name the conversation, and so its contact. Time online and away (the
# users report and the leaderboard) is a person's, about no conversation: it stays whole. Contacts
# and broadcasts belong to no conversation: those reports ignore the tag.
TAG_REPORTS = ("conversations", "responses", "messages", "resolutions", "assignments", "users", "leaderboard")
# The reports with a number the tag does not narrow (time online and away), said on the page.
UNTAGGED_PRESENCE = ("users", "leaderboard")
NO_BUSINESS_HOURS = "this workspace has no business hours (Settings > General)"
BUCKET_NAMES = ("<30s", "30s-2m", "2m-5m", "5m-10m", "10m-30m", "30m-1h", ">1h")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Table = dict[str, list[Any]]


@dataclass(frozen=True)
class Range:
    first: date
    last: date
    preset: str

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def grain(self) -> str:
        return "h" if self.first == self.last else "d"

    def previous(self) -> "Range":
        return Range(self.first - timedelta(days=self.days), self.first - timedelta(days=1), self.preset)

    def bounds(self, grain: str) -> tuple[str, str]:
        if grain == "h":
            return f"{self.first.isoformat()}T00", f"{self.last.isoformat()}T23"
        return self.first.isoformat(), self.last.isoformat()

    def periods(self) -> list[str]:
        if self.grain == "h":
            return [f"{self.first.isoformat()}T{hour:02d}" for hour in range(24)]
        return [(self.first + timedelta(days=n)).isoformat() for n in range(self.days)]


def zone_of(session: Session, workspace_id: int) -> ZoneInfo:
    name = session.scalar(select(Workspace.timezone).where(Workspace.id == workspace_id))
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _month_start(day: date) -> date:
    return day.replace(day=1)


def check_range(preset: str, start: date | None, end: date | None, today: date) -> Range:
    """The dates of a preset (the last N days end today), or a custom range of at most a year."""
    if preset not in PRESETS:
        raise ValidationFailed.field("range", f"must be one of {', '.join(PRESETS)}")
    if preset == "custom":
        if start is None or end is None:
            field = "from" if start is None else "to"
            raise ValidationFailed.field(field, "a custom range needs both from and to")
        if end < start:
            raise ValidationFailed.field("to", "must not be before from")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValidationFailed.field("to", f"a range is at most {MAX_DAYS} days")
        return Range(start, end, preset)
    if preset == "today":
        return Range(today, today, preset)
    if preset == "yesterday":
        yesterday = today - timedelta(days=1)
        return Range(yesterday, yesterday, preset)
    if preset.startswith("last_") and preset.endswith("_days"):
        days = int(preset.split("_")[1])
        return Range(today - timedelta(days=days - 1), today, preset)
    if preset == "this_month":
        return Range(_month_start(today), today, preset)
    end_of_last = _month_start(today) - timedelta(days=1)
    return Range(_month_start(end_of_last), end_of_last, preset)


def check_filters(session: Session, actor: Actor, filters: Filters) -> Filters:
    """Filters naming things of this workspace; an agent's reports are always their own numbers."""
    ws = actor.workspace_id
    checks: list[tuple[str, int | None, Any]] = [
        (
            "channel_id",
            filters.channel_id,
            select(Channel.id).where(Channel.workspace_id == ws, Channel.id == filters.channel_id),
        ),
        ("team_id", filters.team_id, select(Team.id).where(Team.workspace_id == ws, Team.id == filters.team_id)),
        (
            "user_id",
            filters.user_id,
            select(Membership.id).where(Membership.workspace_id == ws, Membership.user_id == filters.user_id),
        ),
        (
            "category_id",
            filters.category_id,
            select(ClosingCategory.id).where(
                ClosingCategory.workspace_id == ws, ClosingCategory.id == filters.category_id
            ),
        ),
    ]
    checks.append(
        ("tag_id", filters.tag_id, select(Tag.id).where(Tag.workspace_id == ws, Tag.id == filters.tag_id)),
    )
    for field, value, query in checks:
        if value is not None and session.scalar(query) is None:
            raise ValidationFailed.field(field, f"no such {field.removesuffix('_id')} in this workspace")
    if filters.source is not None and filters.source not in SOURCES:
        raise ValidationFailed.field("source", f"must be one of {', '.join(SOURCES)}")
    if not actor.can(Permission.VIEW_REPORTS):
        if actor.user_id is None:
            raise NotFound("No such report.")
        if filters.user_id is not None and filters.user_id != actor.user_id:
            raise ValidationFailed.field("user_id", "you may see only your own numbers")
        return replace(filters, user_id=actor.user_id)
    return filters


def with_tag_named(session: Session, workspace_id: int, filters: Filters, name: str | None) -> Filters:
    """The filters with the tag given by name (as tags compare: "VIP" is "vip"); a name no tag of
    the workspace has is a 422 on `tag`, and so is a name beside a `tag_id`."""
    if not name:
        return filters
    if filters.tag_id is not None:
        raise ValidationFailed.field("tag", "give the tag by name or by tag_id, not both")
    found = session.scalar(select(Tag.id).where(Tag.workspace_id == workspace_id, Tag.name_key == name_key(name)))
    if found is None:
        raise ValidationFailed.field("tag", "no such tag in this workspace")
    return replace(filters, tag_id=int(found))


def has_business_hours(session: Session, workspace_id: int) -> bool:
    """Whether the workspace (or one of its teams) has ever saved enabled business hours: without
    any, a time in business hours is the calendar time, and the toggle would change nothing."""
    schedules = session.scalars(
        select(BusinessHoursVersion.schedule).where(
            BusinessHoursVersion.workspace_id == workspace_id, BusinessHoursVersion.schedule.is_not(None)
        )
    )
    return any(isinstance(schedule, dict) and schedule.get("enabled", True) for schedule in schedules)


def check_business_hours(session: Session, workspace_id: int, name: str, business_hours: bool) -> bool:
    """The toggle as it applies: only to the reports that show times, and only in a workspace with
    business hours (asking for it in one without is a 422)."""
    if not business_hours or name not in TIMED_REPORTS:
        return False
    if not has_business_hours(session, workspace_id):
        raise ValidationFailed.field("business_hours", NO_BUSINESS_HOURS)
    return True


# ----- reading --------------------------------------------------------------------------------


class _Read:
    """The cells of one report for the range and the previous period: the rollups, plus the events
    the consumer has not applied yet (`rollups.pending_rows`), read in one snapshot."""

    def __init__(
        self,
        session: Session,
        workspace_id: int,
        window: Range,
        filters: Filters,
        ranking: "Ranking | None" = None,
        business_hours: bool = False,
    ) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.window = window
        self.filters = filters
        self.ranking = ranking or Ranking()
        self.business_hours = business_hours
        if filters.tag_id is None:
            self.pending = [
                row for row in rollups.pending_rows(session, workspace_id) if repository.row_matches(row, filters)
            ]
        else:
            self.pending = _pending_tagged(session, workspace_id, filters)

    def cells(
        self,
        window: Range,
        metrics: Iterable[str],
        *,
        grain: str | None = None,
        by: str | None = None,
        whole: bool = False,
    ) -> list[Cell]:
        """The cells of `metrics` in `window`, grouped by one dimension when `by` names it (each
        cell's `key` is then its value). With the business-hours toggle on, a time's cells are its
        business-hours twin's, named as the time (so every report reads them alike). `whole`: summed
        over the whole window (period repository.WHOLE, the pending events' cells too), for numbers
        that ignore the period; the same sums as the cells by period, from far fewer rows."""
        chosen = grain or window.grain
        first, last = window.bounds(chosen)
        if self.filters.empty and by is None:
            chosen = repository.TOTALS[chosen]
        named = {rollups.in_business_hours(m) if self.business_hours else m: m for m in metrics}
        wanted = set(named)
        # A tag is no dimension of the rollups: the same cells are added up from the items.
        read = repository.cells if self.filters.tag_id is None else repository.item_cells
        found = read(self.session, self.workspace_id, chosen, first, last, wanted, self.filters, by=by, whole=whole)
        if self.business_hours:
            # Only then: a year's report reads tens of thousands of cells.
            found = [c if named[c.metric] == c.metric else replace(c, metric=named[c.metric]) for c in found]
        found.extend(
            Cell(
                period=repository.WHOLE if whole else row["period"],
                metric=named[row["metric"]],
                label=row["label"],
                bucket=row["bucket"],
                count=row["count"],
                total=row["total"],
                key=row[by] if by is not None else 0,
            )
            for row in self.pending
            if row["grain"] == chosen and first <= row["period"] <= last and row["metric"] in wanted
        )
        return found

    def labels_by(self, window: Range, metric: str, column: str) -> set[tuple[int, str]]:
        """The different labels of `metric` in `window` with one dimension's value, pending events
        included."""
        grain = window.grain
        first, last = window.bounds(grain)
        if self.filters.tag_id is not None:  # the items' cells, pending events included
            return {(c.key, c.label) for c in self.cells(window, [metric], by=column, whole=True) if c.count}
        found = repository.labels_by(self.session, self.workspace_id, grain, first, last, metric, self.filters, column)
        found.update(self._pending_labels(window, metric, column))
        return found

    def label_counts(self, window: Range, metric: str, column: str) -> dict[int, int]:
        """How many of `labels_by`'s pairs each value of the dimension has, without reading every
        pair: the database counts the rollups' pairs, and a pending event's pair adds one unless the
        rollups have it already."""
        if self.filters.tag_id is not None:
            counts: dict[int, int] = defaultdict(int)
            for key, _label in self.labels_by(window, metric, column):
                counts[key] += 1
            return dict(counts)
        grain = window.grain
        first, last = window.bounds(grain)
        found = defaultdict(
            int,
            repository.label_counts(self.session, self.workspace_id, grain, first, last, metric, self.filters, column),
        )
        pending = self._pending_labels(window, metric, column)
        for key, _label in pending - self._stored_among(window, metric, column, pending):
            found[key] += 1
        return dict(found)

    def label_count(self, window: Range, metric: str, column: str) -> int:
        """How many different labels `labels_by`'s pairs have, whatever the dimension's value, as
        `label_counts` counts them."""
        if self.filters.tag_id is not None:
            return len({label for _key, label in self.labels_by(window, metric, column)})
        grain = window.grain
        first, last = window.bounds(grain)
        stored = repository.label_count(
            self.session, self.workspace_id, grain, first, last, metric, self.filters, column
        )
        pending = self._pending_labels(window, metric, column)
        known = {label for _key, label in self._stored_among(window, metric, column, pending)}
        return stored + len({label for _key, label in pending} - known)

    def _pending_labels(self, window: Range, metric: str, column: str) -> set[tuple[int, str]]:
        grain = window.grain
        first, last = window.bounds(grain)
        return {
            (row[column], row["label"])
            for row in self.pending
            if row["grain"] == grain and first <= row["period"] <= last and row["metric"] == metric and row["count"]
        }

    def _stored_among(
        self, window: Range, metric: str, column: str, pairs: set[tuple[int, str]]
    ) -> set[tuple[int, str]]:
        """The rollups' pairs with the labels of these (the pending events' few)."""
        if not pairs:
            return set()
        grain = window.grain
        first, last = window.bounds(grain)
        labels = {label for _key, label in pairs}
        return repository.labels_by(
            self.session, self.workspace_id, grain, first, last, metric, self.filters, column, labels
        )


def _pending_tagged(session: Session, workspace_id: int, filters: Filters) -> list[dict[str, Any]]:
    """The items of the events not applied yet, of conversations whose contact has the tag, as the
    rollup rows they stand for (one increment each, by the hour and by the day)."""
    assert filters.tag_id is not None
    items, contacts = rollups.pending_items_with_contacts(session, workspace_id)
    tagged = repository.tagged_contacts(session, filters.tag_id, contacts.values())
    rows: list[dict[str, Any]] = []
    for item in items:
        if contacts.get(item["conversation_id"]) not in tagged or not repository.row_matches(item, filters):
            continue
        increment = {**item, "count": 1, "total": item["seconds"] or 0.0}
        rows.append({**increment, "grain": "h"})
        rows.append({**increment, "grain": "d", "period": item["period"][:10]})
    return rows


def _breakdown(read: "_Read", metrics: Iterable[str], column: str) -> dict[tuple[int, str], int]:
    """Counts by one dimension for the report's range: rollups plus pending events."""
    if read.filters.tag_id is not None:
        counts: dict[tuple[int, str], int] = defaultdict(int)
        for cell in read.cells(read.window, metrics, by=column):
            counts[(cell.key, cell.metric)] += cell.count
        return dict(counts)
    grain = read.window.grain
    first, last = read.window.bounds(grain)
    wanted = set(metrics)
    counts = defaultdict(
        int, repository.breakdown(read.session, read.workspace_id, grain, first, last, wanted, read.filters, column)
    )
    for row in read.pending:
        if row["grain"] == grain and first <= row["period"] <= last and row["metric"] in wanted:
            counts[(row[column], row["metric"])] += row["count"]
    return dict(counts)


def _counts(cells: Iterable[Cell]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for cell in cells:
        totals[cell.metric] += cell.count
    return totals


def _histograms(cells: Iterable[Cell]) -> dict[str, dict[int, tuple[int, float]]]:
    found: dict[str, dict[int, tuple[int, float]]] = defaultdict(dict)
    for cell in cells:
        if cell.bucket >= 0:
            histogram.add(found[cell.metric], cell.bucket, cell.count, cell.total)
    return found


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return round((now - before) * 100.0 / before, 1)


SUMMARY_COLUMNS = [
    "metric",
    "count",
    "average_seconds",
    "median_seconds",
    "p90_seconds",
    "previous_count",
    "previous_average_seconds",
    "previous_median_seconds",
    "previous_p90_seconds",
    "change_percent",
]


def _summary(counts: list[str], durations: list[str], now: list[Cell], before: list[Cell]) -> Table:
    rows = _count_rows(counts, _counts(now), _counts(before))
    now_h, before_h = _histograms(now), _histograms(before)
    for metric in durations:
        rows.append(_duration_row(metric, now_h.get(metric, {}), before_h.get(metric, {})))
    return {"columns": SUMMARY_COLUMNS, "rows": rows}


def _by_period(cells: Iterable[Cell]) -> dict[str, list[Cell]]:
    grouped: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        grouped[cell.period].append(cell)
    return grouped


def _people(session: Session, workspace_id: int, ids: Iterable[int]) -> dict[int, str]:
    """Members' names (or emails) by user id; someone who left the workspace keeps "#id"."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.first_name, User.last_name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id, User.id.in_(wanted))
    )
    return {int(i): " ".join(p for p in (first, last) if p) or str(email) for i, first, last, email in rows}


def _names(session: Session, model: Any, workspace_id: int, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows = session.execute(select(model.id, model.name).where(model.workspace_id == workspace_id, model.id.in_(wanted)))
    return {int(i): str(n) for i, n in rows}


# ----- the reports ----------------------------------------------------------------------------


def _conversations(read: _Read) -> dict[str, Table]:
    metrics = ("opened", "closed", "reopened", "first_response", "resolution")
    now = read.cells(read.window, metrics)
    before = read.cells(read.window.previous(), metrics, whole=True)
    per_period = _by_period(now)
    series: list[list[Any]] = []
    for period in read.window.periods():
        counts = _counts(per_period.get(period, []))
        durations = _histograms(per_period.get(period, []))
        series.append(
            [
                period,
                counts.get("opened", 0),
                counts.get("closed", 0),
                counts.get("reopened", 0),
                _seconds(histogram.stats(durations.get("first_response", {})).median),
                _seconds(histogram.stats(durations.get("resolution", {})).median),
            ]
        )
    by_category: dict[int, int] = defaultdict(int)
    for (category, _metric), count in _breakdown(read, ["closed"], "category_id").items():
        by_category[category] += count
    names = _names(read.session, ClosingCategory, read.workspace_id, by_category)
    return {
        "summary": _summary(["opened", "closed", "reopened"], ["first_response", "resolution"], now, before),
        "series": {
            "columns": [
                "period",
                "opened",
                "closed",
                "reopened",
                "first_response_median_seconds",
                "resolution_median_seconds",
            ],
            "rows": series,
        },
        "closed_by_category": {
            "columns": ["category_id", "category", "closed"],
            "rows": [
                [category or None, names.get(category, f"#{category}") if category else None, count]
                for category, count in sorted(by_category.items(), key=lambda item: (-item[1], item[0]))
            ],
        },
    }


# The times the responses report shows: the first response, the first assignment, every reply,
# and the first and latest assignment until a person replied.
RESPONSE_TIMES = ("first_response", "assignment", "reply_time", "first_assign_response", "last_assign_response")
PER_CONVERSATION_COLUMNS = [
    "metric",
    "replies",
    "conversations",
    "average",
    "previous_replies",
    "previous_conversations",
    "previous_average",
    "change_percent",
]


def _time_series(read: _Read, per_period: Mapping[str, list[Cell]], metric: str) -> Table:
    """One time's count, average, median and p90 per day (or hour) of the range."""
    rows: list[list[Any]] = []
    for period in read.window.periods():
        stats = histogram.stats(_histograms(per_period.get(period, [])).get(metric, {}))
        rows.append([period, stats.count, _seconds(stats.average), _seconds(stats.median), _seconds(stats.p90)])
    return {"columns": ["period", "count", "average_seconds", "median_seconds", "p90_seconds"], "rows": rows}


def _bucket_table(buckets: dict[int, tuple[int, float]]) -> Table:
    """How many times fall in each column of the response table (<30s ... >1h), with shares."""
    counts = histogram.response_table(buckets)
    total = sum(counts)
    return {
        "columns": ["bucket", "count", "percent"],
        "rows": [
            [name, count, round(count * 100.0 / total, 1) if total else None]
            for name, count in zip(BUCKET_NAMES, counts, strict=True)
        ],
    }


def _replies(read: _Read, window: Range) -> tuple[int, int]:
    """The replies of people in `window` and the different conversations they went to."""
    replies = _counts(read.cells(window, ["replies"], whole=True)).get("replies", 0)
    return replies, read.label_count(window, "replied_conversation", "user_id")


def _per_conversation(read: _Read) -> Table:
    """Replies of people per conversation replied to, in the range and the previous period."""
    replies, conversations = _replies(read, read.window)
    previous_replies, previous_conversations = _replies(read, read.window.previous())
    average = round(replies / conversations, 2) if conversations else None
    previous = round(previous_replies / previous_conversations, 2) if previous_conversations else None
    row = [
        "replies_per_conversation",
        replies,
        conversations,
        average,
        previous_replies,
        previous_conversations,
        previous,
        _change(average, previous),
    ]
    return {"columns": PER_CONVERSATION_COLUMNS, "rows": [row]}


def _responses(read: _Read) -> dict[str, Table]:
    now = read.cells(read.window, RESPONSE_TIMES)
    before = read.cells(read.window.previous(), RESPONSE_TIMES, whole=True)
    per_period = _by_period(now)
    every = _histograms(now)
    return {
        "summary": _summary([], list(RESPONSE_TIMES), now, before),
        "series": _time_series(read, per_period, "first_response"),
        "buckets": _bucket_table(every.get("first_response", {})),
        "per_conversation": _per_conversation(read),
        "reply_series": _time_series(read, per_period, "reply_time"),
        "reply_buckets": _bucket_table(every.get("reply_time", {})),
        "first_assign_series": _time_series(read, per_period, "first_assign_response"),
        "first_assign_buckets": _bucket_table(every.get("first_assign_response", {})),
        "last_assign_series": _time_series(read, per_period, "last_assign_response"),
        "last_assign_buckets": _bucket_table(every.get("last_assign_response", {})),
    }


def _messages(read: _Read) -> dict[str, Table]:
    metrics = ("incoming", "outgoing", "failed")
    now = read.cells(read.window, metrics)
    before = read.cells(read.window.previous(), metrics, whole=True)
    per_period = _by_period(now)
    series = []
    for period in read.window.periods():
        counts = _counts(per_period.get(period, []))
        series.append([period, counts.get("incoming", 0), counts.get("outgoing", 0), counts.get("failed", 0)])
    senders: dict[str, int] = dict.fromkeys(SENDER_KINDS, 0)
    reasons: dict[str, int] = defaultdict(int)
    channels: dict[int, dict[str, int]] = defaultdict(lambda: {"incoming": 0, "outgoing": 0, "failed": 0})
    for (channel_id, metric), count in _breakdown(read, metrics, "channel_id").items():
        channels[channel_id][metric] += count
    for cell in now:
        if cell.metric == "outgoing":
            senders[cell.label] = senders.get(cell.label, 0) + cell.count
        elif cell.metric == "failed":
            reasons[cell.label] += cell.count
    names = _names(read.session, Channel, read.workspace_id, channels)
    heat = [[0] * 24 for _ in WEEKDAYS]
    for cell in read.cells(read.window, ["incoming"], grain="h"):
        day, hour = date.fromisoformat(cell.period[:10]), int(cell.period[11:13])
        heat[day.weekday()][hour] += cell.count
    return {
        "summary": _summary(list(metrics), [], now, before),
        "series": {"columns": ["period", "incoming", "outgoing", "failed"], "rows": series},
        "outgoing_by_sender": {"columns": ["sender", "count"], "rows": [[k, v] for k, v in senders.items()]},
        "by_channel": {
            "columns": ["channel_id", "channel", "incoming", "outgoing", "failed"],
            "rows": [
                [cid or None, names.get(cid, f"#{cid}") if cid else None, c["incoming"], c["outgoing"], c["failed"]]
                for cid, c in sorted(channels.items(), key=lambda item: (-sum(item[1].values()), item[0]))
            ],
        },
        "failed_reasons": {
            "columns": ["reason", "count"],
            "rows": [[k, v] for k, v in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))],
        },
        "heatmap": {
            "columns": ["weekday", *[f"{hour:02d}" for hour in range(24)]],
            "rows": [[name, *row] for name, row in zip(WEEKDAYS, heat, strict=True)],
        },
    }


# Who closed: a person, a bot, or anything else (workflows, the API, the system, the auto-close).
CLOSED_BY = {"user": "closed_by_person", "bot": "closed_by_bot"}


def _closed_by(cells: Iterable[Cell]) -> list[Cell]:
    """The closings split by who closed them, as counts of their own (closed_by_person,
    closed_by_bot, closed_by_other) so the summary compares them like any metric."""
    return [
        Cell(
            period=c.period,
            metric=CLOSED_BY.get(c.label, "closed_by_other"),
            label=c.label,
            bucket=c.bucket,
            count=c.count,
            total=c.total,
        )
        for c in cells
        if c.metric == "closed"
    ]


def _resolutions(read: _Read) -> dict[str, Table]:
    metrics = ("closed", "resolution", "assignment")
    now = read.cells(read.window, metrics)
    before = read.cells(read.window.previous(), metrics, whole=True)
    split = ["closed_by_person", "closed_by_bot", "closed_by_other"]
    per_period = _by_period(now + _closed_by(now))
    series: list[list[Any]] = []
    for period in read.window.periods():
        cells = per_period.get(period, [])
        counts = _counts(cells)
        durations = _histograms(cells)
        series.append(
            [
                period,
                counts.get("closed", 0),
                *(counts.get(metric, 0) for metric in split),
                _seconds(histogram.stats(durations.get("resolution", {})).median),
                _seconds(histogram.stats(durations.get("assignment", {})).median),
            ]
        )
    by_source: dict[str, dict[int, tuple[int, float]]] = {source: {} for source in CLOSING_SOURCES}
    for cell in now:
        if cell.metric == "resolution":
            histogram.add(by_source.setdefault(cell.label or "unknown", {}), cell.bucket, cell.count, cell.total)
    source_rows: list[list[Any]] = []
    for source, buckets in by_source.items():
        stats = histogram.stats(buckets)
        source_rows.append([source, stats.count, _seconds(stats.average), _seconds(stats.median), _seconds(stats.p90)])
    return {
        "summary": _summary(
            ["closed", *split], ["resolution", "assignment"], now + _closed_by(now), before + _closed_by(before)
        ),
        "series": {
            "columns": ["period", "closed", *split, "resolution_median_seconds", "assignment_median_seconds"],
            "rows": series,
        },
        "by_closer": {
            "columns": ["closer", "closed", "average_seconds", "median_seconds", "p90_seconds"],
            "rows": source_rows,
        },
    }


def _assignments(read: _Read) -> dict[str, Table]:
    counted = ("assigned", "unassigned")
    now = read.cells(read.window, [*counted, "assignment"])
    before = read.cells(read.window.previous(), [*counted, "assignment"], whole=True)
    per_period = _by_period(now)
    series = []
    for period in read.window.periods():
        counts = _counts(per_period.get(period, []))
        series.append([period, counts.get("assigned", 0), counts.get("unassigned", 0)])
    sources: dict[str, dict[str, int]] = {source: {"assigned": 0, "unassigned": 0} for source in ASSIGNMENT_SOURCES}
    for cell in now:
        if cell.metric in counted:
            sources.setdefault(cell.label, {"assigned": 0, "unassigned": 0})[cell.metric] += cell.count

    def by(column: str) -> dict[int, dict[str, int]]:
        found: dict[int, dict[str, int]] = defaultdict(lambda: {"assigned": 0, "unassigned": 0})
        for (value, metric), count in _breakdown(read, counted, column).items():
            found[value][metric] += count
        return found

    def ranked(found: dict[int, dict[str, int]]) -> list[tuple[int, dict[str, int]]]:
        return sorted(found.items(), key=lambda item: (-item[1]["assigned"], -item[1]["unassigned"], item[0]))

    users, teams = by("user_id"), by("team_id")
    people = _people(read.session, read.workspace_id, users)
    team_names = _names(read.session, Team, read.workspace_id, teams)
    return {
        "summary": _summary(list(counted), ["assignment"], now, before),
        "series": {"columns": ["period", "assigned", "unassigned"], "rows": series},
        "by_source": {
            "columns": ["source", "assigned", "unassigned"],
            "rows": [[source, c["assigned"], c["unassigned"]] for source, c in sources.items()],
        },
        "by_user": {
            "columns": ["user_id", "person", "assigned", "unassigned"],
            "rows": [
                [uid or None, people.get(uid, f"#{uid}") if uid else None, c["assigned"], c["unassigned"]]
                for uid, c in ranked(users)
            ],
        },
        "by_team": {
            "columns": ["team_id", "team", "assigned", "unassigned"],
            "rows": [
                [tid or None, team_names.get(tid, f"#{tid}") if tid else None, c["assigned"], c["unassigned"]]
                for tid, c in ranked(teams)
            ],
        },
    }


def _imported(read: _Read, window: Range) -> list[Cell]:
    """Contacts created by imports, as cells of contacts_added (label "import"): an import adds its
    contacts in batches without an event each, so they are read from the import jobs, on the date
    the job finished (a job that failed half way counts the contacts it did create)."""
    zone = zone_of(read.session, read.workspace_id)
    start = datetime.combine(window.first, time.min, zone).astimezone(UTC)
    end = datetime.combine(window.last + timedelta(days=1), time.min, zone).astimezone(UTC)
    query = select(ImportJob.finished_at, ImportJob.created_count).where(
        ImportJob.workspace_id == read.workspace_id,
        ImportJob.finished_at >= start,
        ImportJob.finished_at < end,
        ImportJob.created_count > 0,
    )
    if read.filters.user_id is not None:
        query = query.where(ImportJob.user_id == read.filters.user_id)
    cells = []
    for finished, created in read.session.execute(query):
        if finished is None:
            continue
        local = finished.astimezone(zone)
        period = local.strftime("%Y-%m-%dT%H") if window.grain == "h" else local.strftime("%Y-%m-%d")
        cells.append(
            Cell(period=period, metric="contacts_added", label="import", bucket=-1, count=int(created), total=0.0)
        )
    return cells


def _contacts(read: _Read) -> dict[str, Table]:
    metrics = ("contacts_added", "contacts_deleted", "contacts_merged")
    now = read.cells(read.window, metrics) + _imported(read, read.window)
    before = read.cells(read.window.previous(), metrics, whole=True) + _imported(read, read.window.previous())
    per_period = _by_period(now)
    series = []
    for period in read.window.periods():
        counts = _counts(per_period.get(period, []))
        series.append([period, *(counts.get(metric, 0) for metric in metrics)])
    sources: dict[str, int] = dict.fromkeys(CONTACT_SOURCES, 0)
    for cell in now:
        if cell.metric == "contacts_added":
            sources[cell.label] = sources.get(cell.label, 0) + cell.count
    return {
        "summary": _summary(list(metrics), [], now, before),
        "series": {"columns": ["period", *metrics], "rows": series},
        "added_by_source": {"columns": ["source", "count"], "rows": [[k, v] for k, v in sources.items()]},
    }


# ----- per person or team: the users report and the leaderboard ------------------------------


def _duration_row(metric: str, now: dict[int, tuple[int, float]], before: dict[int, tuple[int, float]]) -> list[Any]:
    """A summary row (SUMMARY_COLUMNS) of a time: count, average, median and p90 in this period and
    the previous one, and the change of the median."""
    a, b = histogram.stats(now), histogram.stats(before)
    return [
        metric,
        a.count,
        _seconds(a.average),
        _seconds(a.median),
        _seconds(a.p90),
        b.count,
        _seconds(b.average),
        _seconds(b.median),
        _seconds(b.p90),
        _change(a.median, b.median),
    ]


def _count_rows(metrics: Iterable[str], now: Mapping[str, int], before: Mapping[str, int]) -> list[list[Any]]:
    """Summary rows (SUMMARY_COLUMNS) of plain counts: this period, the previous one, the change; a
    metric with no count is 0."""
    return [
        [
            metric,
            now.get(metric, 0),
            None,
            None,
            None,
            before.get(metric, 0),
            None,
            None,
            None,
            _change(now.get(metric, 0), before.get(metric, 0)),
        ]
        for metric in metrics
    ]


# What the users report counts per person (and the leaderboard ranks): counts, then times.
PER_COUNTS = ("assigned", "closed", "contacts_closed", "messages_sent", "comments")
PER_TIMES = ("first_response", "resolution")
PER_ROLLUPS = ("assigned", "closed", "outgoing", "comments", "first_response", "resolution")
# Shown beside them per person or team (not ranked, not in the summary): the median reply time, and
# the replies per conversation replied to.
REPLY_TIME = "reply_time"
PER_REPLY_ROLLUPS = ("replies", REPLY_TIME)


@dataclass
class _Numbers:
    counts: dict[str, int]
    times: dict[str, dict[int, tuple[int, float]]]
    online_seconds: float = 0.0
    away_seconds: float = 0.0
    replies: int = 0
    replied_conversations: int = 0

    @classmethod
    def empty(cls) -> "_Numbers":
        return cls(dict.fromkeys(PER_COUNTS, 0), {metric: {} for metric in (*PER_TIMES, REPLY_TIME)})

    def reply_columns(self) -> list[float | None]:
        """The median reply time and the replies per conversation replied to (two decimals, as the
        responses report; none without replies)."""
        conversations = self.replied_conversations
        return [
            _seconds(histogram.stats(self.times[REPLY_TIME]).median),
            round(self.replies / conversations, 2) if conversations else None,
        ]


def _as_numbers(cells: Iterable[Cell], per: dict[int, "_Numbers"], keyed: bool) -> None:
    """Add cells to their person's or team's numbers (`keyed`: grouped by a dimension, else all
    under 0). Messages sent are the outgoing messages of a person (sender kind user)."""
    for cell in cells:
        numbers = per.setdefault(cell.key if keyed else 0, _Numbers.empty())
        if cell.metric in numbers.times:
            histogram.add(numbers.times[cell.metric], cell.bucket, cell.count, cell.total)
        elif cell.metric == "replies":
            numbers.replies += cell.count
        elif cell.metric == "outgoing":
            if cell.label == SenderKind.USER.value:
                numbers.counts["messages_sent"] += cell.count
        else:
            numbers.counts[cell.metric] += cell.count


def _tagged_cells(
    read: "_Read", window: Range, metrics: Iterable[str], labelled: Iterable[str], column: str
) -> tuple[list[Cell], dict[str, set[tuple[int, str]]]]:
    """With the tag filter: the cells of `metrics` and the (dimension value, label) pairs of the
    `labelled` metrics (`_Read.labels_by`'s) from one read of the items, which name every label
    anyway: each read is a scan of the range's items."""
    wanted = set(labelled)
    cells = read.cells(window, (*metrics, *wanted), by=column, whole=True)
    pairs: dict[str, set[tuple[int, str]]] = {metric: set() for metric in wanted}
    for cell in cells:
        if cell.metric in wanted and cell.count:
            pairs[cell.metric].add((cell.key, cell.label))
    return [cell for cell in cells if cell.metric not in wanted], pairs


def _per(read: "_Read", window: Range, column: str) -> dict[int, _Numbers]:
    """Every number of PER_COUNTS and PER_TIMES in `window`, and the replies' numbers, by person
    (`user_id`) or team."""
    per: dict[int, _Numbers] = {}
    metrics = (*PER_ROLLUPS, *PER_REPLY_ROLLUPS)
    if read.filters.tag_id is None:
        _as_numbers(read.cells(window, metrics, by=column, whole=True), per, keyed=True)
        closed = read.label_counts(window, "closed_contact", column)
        replied = read.label_counts(window, "replied_conversation", column)
    else:
        cells, pairs = _tagged_cells(read, window, metrics, LABELLED_METRICS, column)
        _as_numbers(cells, per, keyed=True)
        closed = Counter(key for key, _label in pairs["closed_contact"])
        replied = Counter(key for key, _label in pairs["replied_conversation"])
    for key, count in closed.items():
        per.setdefault(key, _Numbers.empty()).counts["contacts_closed"] += count
    for key, count in replied.items():
        per.setdefault(key, _Numbers.empty()).replied_conversations += count
    return per


def _whole(read: "_Read", window: Range) -> _Numbers:
    per: dict[int, _Numbers] = {}
    if read.filters.tag_id is None:
        _as_numbers(read.cells(window, PER_ROLLUPS, whole=True), per, keyed=False)
        # The same contact closed by two people is one contact of the workspace.
        closed = read.label_count(window, "closed_contact", "user_id")
    else:
        cells, pairs = _tagged_cells(read, window, PER_ROLLUPS, ["closed_contact"], "user_id")
        _as_numbers(cells, per, keyed=False)
        closed = len({label for _key, label in pairs["closed_contact"]})
    numbers = per.get(0, _Numbers.empty())
    numbers.counts["contacts_closed"] = closed
    return numbers


def _utc_bounds(read: "_Read", window: Range) -> tuple[datetime, datetime]:
    zone = zone_of(read.session, read.workspace_id)
    start = datetime.combine(window.first, time.min, zone).astimezone(UTC)
    end = datetime.combine(window.last + timedelta(days=1), time.min, zone).astimezone(UTC)
    return start, end


def _time_in_status(read: "_Read", window: Range, user_ids: Iterable[int]) -> dict[int, dict[str, float]]:
    """Seconds each person was shown online and away within the range (status periods; an open
    period runs to now). Presence is a person's, not a workspace's."""
    wanted = sorted(set(user_ids))
    found: dict[int, dict[str, float]] = {uid: {"online": 0.0, "away": 0.0} for uid in wanted}
    if not wanted:
        return found
    start, end = _utc_bounds(read, window)
    now = utcnow()
    rows = read.session.execute(
        select(StatusPeriod.user_id, StatusPeriod.status, StatusPeriod.started_at, StatusPeriod.ended_at).where(
            StatusPeriod.user_id.in_(wanted),
            StatusPeriod.status.in_([ActivityStatus.ONLINE, ActivityStatus.AWAY]),
            StatusPeriod.started_at < end,
            or_(StatusPeriod.ended_at.is_(None), StatusPeriod.ended_at > start),
        )
    )
    for user_id, status, began, ended in rows:
        seconds = (min(as_utc(ended) if ended else now, end) - max(as_utc(began), start)).total_seconds()
        if seconds > 0:
            found[int(user_id)][ActivityStatus(status).value] += seconds
    return found


def _members(read: "_Read") -> list[int]:
    """The people a users report lists: the workspace's active members (of the team, when filtered
    on one), or the one person filtered on."""
    if read.filters.user_id is not None:
        return [read.filters.user_id]
    query = select(Membership.user_id).where(Membership.workspace_id == read.workspace_id, Membership.active)
    if read.filters.team_id is not None:
        query = query.join(
            TeamMember, (TeamMember.user_id == Membership.user_id) & (TeamMember.team_id == read.filters.team_id)
        )
    return [int(uid) for uid in read.session.scalars(query)]


def _teams(read: "_Read") -> list[int]:
    """The teams a leaderboard of teams lists: every team of the workspace, or the one filtered on."""
    if read.filters.team_id is not None:
        return [read.filters.team_id]
    return [int(tid) for tid in read.session.scalars(select(Team.id).where(Team.workspace_id == read.workspace_id))]


def _time_columns(stats: histogram.Stats) -> list[float | None]:
    return [_seconds(stats.median), _seconds(stats.average), _seconds(stats.p90)]


REPLY_COLUMNS = ["reply_time_median_seconds", "replies_per_conversation"]
USER_COLUMNS = [
    "user_id",
    "person",
    *PER_COUNTS,
    "first_response_median_seconds",
    "first_response_average_seconds",
    "first_response_p90_seconds",
    "resolution_median_seconds",
    "resolution_average_seconds",
    "resolution_p90_seconds",
    "online_seconds",
    "away_seconds",
    *REPLY_COLUMNS,
]


def _users(read: "_Read") -> dict[str, Table]:
    per = _per(read, read.window, "user_id")
    ids = [uid for uid in dict.fromkeys([*_members(read), *sorted(per)]) if uid != NONE]
    presence = _time_in_status(read, read.window, ids)
    names = _people(read.session, read.workspace_id, ids)
    rows: list[list[Any]] = []
    for uid in ids:
        numbers = per.get(uid, _Numbers.empty())
        rows.append(
            [
                uid,
                names.get(uid, f"#{uid}"),
                *(numbers.counts[metric] for metric in PER_COUNTS),
                *_time_columns(histogram.stats(numbers.times["first_response"])),
                *_time_columns(histogram.stats(numbers.times["resolution"])),
                round(presence[uid]["online"]),
                round(presence[uid]["away"]),
                *numbers.reply_columns(),
            ]
        )
    rows.sort(key=lambda row: (str(row[1]).casefold(), row[0]))
    now, before = _whole(read, read.window), _whole(read, read.window.previous())
    summary = _count_rows(PER_COUNTS, now.counts, before.counts)
    for metric in PER_TIMES:
        summary.append(_duration_row(metric, now.times[metric], before.times[metric]))
    return {
        "summary": {"columns": SUMMARY_COLUMNS, "rows": summary},
        "users": {"columns": USER_COLUMNS, "rows": rows},
    }


LEADERBOARD_METRICS = (*PER_COUNTS, "first_response", "resolution", "online")
LEADERBOARD_BY = ("user", "team")
TOP = 10


@dataclass(frozen=True)
class Ranking:
    """The leaderboard's choice: what to rank (a count, a median time, time online) and whom."""

    metric: str = "closed"
    by: str = "user"

    def as_query(self) -> dict[str, str]:
        return {"metric": self.metric, "by": self.by}


def check_ranking(metric: str | None, by: str | None) -> Ranking:
    chosen = Ranking(metric or "closed", by or "user")
    if chosen.metric not in LEADERBOARD_METRICS:
        raise ValidationFailed.field("metric", f"must be one of {', '.join(LEADERBOARD_METRICS)}")
    if chosen.by not in LEADERBOARD_BY:
        raise ValidationFailed.field("by", f"must be one of {', '.join(LEADERBOARD_BY)}")
    if chosen.by == "team" and chosen.metric == "online":
        raise ValidationFailed.field("metric", "time online is a person's, not a team's")
    return chosen


def _score(numbers: _Numbers, metric: str) -> float | None:
    if metric in PER_COUNTS:
        return numbers.counts[metric]
    if metric == "online":
        return round(numbers.online_seconds)
    return _seconds(histogram.stats(numbers.times[metric]).median)


def _ranked(per: dict[int, _Numbers], names: dict[int, str], metric: str) -> list[tuple[int, int, float | None]]:
    """(rank, id, value): counts and time online highest first, times lowest first; no value last.
    Equal values share a rank (1, 2, 2, 4)."""
    higher_first = metric in PER_COUNTS or metric == "online"
    scored = [(key, _score(numbers, metric)) for key, numbers in per.items()]

    def order(item: tuple[int, float | None]) -> tuple[bool, float, str, int]:
        key, value = item
        sortable = 0.0 if value is None else (-value if higher_first else value)
        return (value is None, sortable, names.get(key, "").casefold(), key)

    ranked: list[tuple[int, int, float | None]] = []
    previous: float | None = None
    rank = 0
    for position, (key, value) in enumerate(sorted(scored, key=order), start=1):
        if position == 1 or value != previous:
            rank = position
        ranked.append((rank, key, value))
        previous = value
    return ranked


def _leaderboard(read: "_Read") -> dict[str, Table]:
    ranking = read.ranking
    column = "user_id" if ranking.by == "user" else "team_id"

    def gather(window: Range) -> dict[int, _Numbers]:
        per = _per(read, window, column)
        for key in _members(read) if ranking.by == "user" else _teams(read):
            per.setdefault(key, _Numbers.empty())
        per.pop(NONE, None)
        if ranking.metric == "online":
            for uid, seconds in _time_in_status(read, window, per).items():
                per[uid].online_seconds = seconds["online"]
        return per

    now, before = gather(read.window), gather(read.window.previous())
    if ranking.by == "user":
        names = _people(read.session, read.workspace_id, [*now, *before])
    else:
        names = _names(read.session, Team, read.workspace_id, [*now, *before])
    previous = {key: (rank, value) for rank, key, value in _ranked(before, names, ranking.metric)}
    rows: list[list[Any]] = []
    for rank, key, value in _ranked(now, names, ranking.metric):
        earlier = previous.get(key, (None, None))
        rows.append([rank, key, names.get(key, f"#{key}"), value, earlier[0], earlier[1], *now[key].reply_columns()])
    unit = "seconds" if ranking.metric in (*PER_TIMES, "online") else "count"
    return {
        "leaderboard": {
            "columns": [
                "rank",
                "id",
                "name",
                f"value_{unit}",
                "previous_rank",
                f"previous_value_{unit}",
                *REPLY_COLUMNS,
            ],
            "rows": rows,
        }
    }


# ----- broadcasts -------------------------------------------------------------------------------

BROADCAST_COUNTS = ("recipients", "sent", "delivered", "read", "replied", "failed")


def _broadcasts_in(read: "_Read", window: Range) -> list[Broadcast]:
    """Broadcasts that started sending in the range (drafts and scheduled ones have not), of the
    channel filtered on, and created by the person filtered on."""
    start, end = _utc_bounds(read, window)
    query = select(Broadcast).where(
        Broadcast.workspace_id == read.workspace_id,
        Broadcast.started_at >= start,
        Broadcast.started_at < end,
    )
    if read.filters.channel_id is not None:
        query = query.where(Broadcast.channel_id == read.filters.channel_id)
    if read.filters.user_id is not None:
        query = query.where(Broadcast.created_by_user_id == read.filters.user_id)
    return list(read.session.scalars(query.order_by(Broadcast.started_at, Broadcast.id)))


def _broadcast_numbers(read: "_Read", items: list[Broadcast]) -> dict[int, dict[str, int]]:
    """The broadcasts pages' own figures (broadcasts.repository.summaries): recipients (waiting or
    messaged), then the messages: sent (sent, delivered or read), delivered (or read), read, failed;
    replied: recipients who answered within the reply window."""
    found: dict[int, dict[str, int]] = {}
    for broadcast_id, raw in broadcasts_repo.summaries(read.session, [b.id for b in items]).items():
        read_count = raw.get(DeliveryStatus.READ.value, 0)
        delivered = raw.get(DeliveryStatus.DELIVERED.value, 0) + read_count
        found[broadcast_id] = {
            "recipients": raw.get(f"state:{RecipientState.WAITING.value}", 0)
            + raw.get(f"state:{RecipientState.MESSAGED.value}", 0),
            "sent": raw.get(DeliveryStatus.SENT.value, 0) + delivered,
            "delivered": delivered,
            "read": read_count,
            "replied": raw.get("replied", 0),
            "failed": raw.get(DeliveryStatus.FAILED.value, 0),
        }
    return found


def _broadcasts(read: "_Read") -> dict[str, Table]:
    zone = zone_of(read.session, read.workspace_id)
    items = _broadcasts_in(read, read.window)
    numbers = _broadcast_numbers(read, items)
    earlier = _broadcasts_in(read, read.window.previous())
    earlier_numbers = _broadcast_numbers(read, earlier)
    per_period: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(("broadcasts", *BROADCAST_COUNTS), 0))
    rows: list[list[Any]] = []
    for item in items:
        if item.started_at is None:  # not started: never in a range (the query asks for a start)
            continue
        local = as_utc(item.started_at).astimezone(zone)
        period = local.strftime("%Y-%m-%dT%H") if read.window.grain == "h" else local.strftime("%Y-%m-%d")
        counts = numbers.get(item.id, dict.fromkeys(BROADCAST_COUNTS, 0))
        per_period[period]["broadcasts"] += 1
        for metric in BROADCAST_COUNTS:
            per_period[period][metric] += counts[metric]
        rows.append(
            [
                item.id,
                item.name,
                local.strftime("%Y-%m-%d %H:%M"),
                item.status.value,
                *(counts[metric] for metric in BROADCAST_COUNTS),
                f"/broadcasts/{item.id}",
            ]
        )
    totals = ("broadcasts", *BROADCAST_COUNTS)
    now = {metric: sum(p[metric] for p in per_period.values()) for metric in totals}
    before = {metric: sum(n[metric] for n in earlier_numbers.values()) for metric in BROADCAST_COUNTS}
    before["broadcasts"] = len(earlier)
    summary = _count_rows(totals, now, before)
    series = [[period, *(per_period[period][m] for m in totals)] for period in read.window.periods()]
    return {
        "summary": {"columns": SUMMARY_COLUMNS, "rows": summary},
        "series": {"columns": ["period", *totals], "rows": series},
        "by_broadcast": {
            "columns": ["broadcast_id", "broadcast", "started", "status", *BROADCAST_COUNTS, "link"],
            "rows": rows,
        },
    }


BUILDERS: dict[str, Callable[[_Read], dict[str, Table]]] = {
    "conversations": _conversations,
    "responses": _responses,
    "messages": _messages,
    "resolutions": _resolutions,
    "assignments": _assignments,
    "contacts": _contacts,
    "users": _users,
    "leaderboard": _leaderboard,
    "broadcasts": _broadcasts,
}

# The filters a report applies; the others name conversations, which contacts' numbers have none of.
APPLIED_FILTERS: dict[str, tuple[str, ...]] = {"contacts": ("user_id",), "broadcasts": ("channel_id", "user_id")}


@contextmanager
def _snapshot(session: Session) -> Iterator[Session]:
    """A session of its own for one report: every read in one snapshot (REPEATABLE READ on
    PostgreSQL; SQLite's read transaction is one), so a rollup and the events not yet applied to it
    are never both counted; and thrown away, because the pending events are applied to its fact rows
    in memory."""
    with _snapshot_on(session.get_bind().engine) as snapshot:
        yield snapshot


@contextmanager
def _snapshot_on(engine: Engine) -> Iterator[Session]:
    """`_snapshot` without a request's session: for reading after the request's session is gone
    (a CSV streamed after the endpoint returned)."""
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    snapshot = Session(engine, autoflush=False)
    try:
        yield snapshot
    finally:
        snapshot.rollback()
        snapshot.close()


def today_in(session: Session, workspace_id: int) -> date:
    return datetime.astimezone(utcnow(), zone_of(session, workspace_id)).date()


def build_report(
    session: Session,
    actor: Actor,
    name: str,
    *,
    preset: str = "last_7_days",
    start: date | None = None,
    end: date | None = None,
    filters: Filters | None = None,
    metric: str | None = None,
    by: str | None = None,
    business_hours: bool = False,
) -> dict[str, Any]:
    """One report's tables. `metric` and `by` choose what the leaderboard ranks, and whom; other
    reports ignore them. `business_hours`: times count only the open time of the business hours
    (the reports that show times; the others ignore it)."""
    builder = BUILDERS.get(name)
    if builder is None:
        raise NotFound(f"No report {name!r}.", details={"reports": list(REPORTS)})
    window = check_range(preset, start, end, today_in(session, actor.workspace_id))
    ranking = check_ranking(metric, by) if name == "leaderboard" else None
    chosen = check_filters(session, actor, filters or Filters())
    if name in APPLIED_FILTERS:
        applied = APPLIED_FILTERS[name]
        chosen = Filters(**{k: (v if k in applied else None) for k, v in chosen.__dict__.items()})
    if name not in TAG_REPORTS:
        chosen = replace(chosen, tag_id=None)
    in_hours = check_business_hours(session, actor.workspace_id, name, business_hours)
    previous = window.previous()
    with _snapshot(session) as snapshot:
        tables = builder(_Read(snapshot, actor.workspace_id, window, chosen, ranking, in_hours))
    return {
        "report": name,
        "timezone": zone_of(session, actor.workspace_id).key,
        "range": {"preset": window.preset, "from": window.first.isoformat(), "to": window.last.isoformat()},
        "previous": {"from": previous.first.isoformat(), "to": previous.last.isoformat()},
        "grain": "hour" if window.grain == "h" else "day",
        "filters": chosen.as_query(),
        "options": ranking.as_query() if ranking is not None else {},
        "business_hours": in_hours,
        "tables": tables,
    }


def cells_today(
    session: Session, workspace_id: int, filters: Filters, metrics: Iterable[str], business_hours: bool = False
) -> list[Cell]:
    """Today's cells of `metrics` (workspace time zone) as the "today" report reads them: rollups
    plus the events not applied yet, in one snapshot; times in business hours with the toggle."""
    today = today_in(session, workspace_id)
    window = Range(today, today, "today")
    with _snapshot(session) as snapshot:
        return _Read(snapshot, workspace_id, window, filters, business_hours=business_hours).cells(window, metrics)


# ----- drill-down -----------------------------------------------------------------------------

# What a bar can be opened into: the report, and the metrics of its bars that have items.
DRILLABLE: dict[str, tuple[str, ...]] = {
    "conversations": ("opened", "closed", "reopened"),
    "responses": ("first_response", "reply_time", "first_assign_response", "last_assign_response"),
}
DRILL_LIMIT = 500


def _bucket_span(name: str) -> tuple[int, int]:
    """The histogram buckets of one column of the responses table ("2m-5m"), low <= b < high: each
    limit is an edge (histogram.RESPONSE_TABLE_EDGES), so the split is exact."""
    if name not in BUCKET_NAMES:
        raise ValidationFailed.field("bucket", f"must be one of {', '.join(BUCKET_NAMES)}")
    index = BUCKET_NAMES.index(name)
    edges = histogram.RESPONSE_TABLE_EDGES
    low = 0 if index == 0 else histogram.bucket_of(edges[index - 1])
    high = len(histogram.EDGES) if index == len(edges) else histogram.bucket_of(edges[index])
    return low, high


def _hours(window: Range, period: str | None) -> tuple[str, str]:
    """The local hours a bar covers: one day or hour of the range (its series' period), or all of it."""
    if period is None:
        return f"{window.first.isoformat()}T00", f"{window.last.isoformat()}T23"
    try:
        day = date.fromisoformat(period[:10])
    except ValueError:
        raise ValidationFailed.field("period", "must be a date or a date and hour of the range") from None
    if not window.first <= day <= window.last:
        raise ValidationFailed.field("period", "must be within the date range")
    if len(period) == 10:
        return f"{period}T00", f"{period}T23"
    if len(period) == 13 and period[10] == "T" and period[11:].isdigit() and int(period[11:]) < 24:
        return period, period
    raise ValidationFailed.field("period", "must be a date or a date and hour of the range")


@dataclass(frozen=True)
class _Bar:
    """One bar's list, checked: the stored metric, the local hours and buckets it covers, and the
    report's range, filters and toggle as they apply."""

    name: str
    metric: str
    period: str | None
    bucket: str | None
    window: Range
    filters: Filters
    business_hours: bool
    stored_metric: str
    first: str
    last: str
    span: tuple[int, int] | None

    def pending(self, snapshot: Session, workspace_id: int) -> list[dict[str, Any]]:
        """The items of the events not applied yet that this bar counts, in event order."""
        waiting = (
            rollups.pending_items(snapshot, workspace_id)
            if self.filters.tag_id is None
            else [row for row in _pending_tagged(snapshot, workspace_id, self.filters) if row["grain"] == "h"]
        )
        return [
            item
            for item in waiting
            if item["metric"] == self.stored_metric
            and self.first <= item["period"] <= self.last
            and repository.row_matches(item, self.filters)
            and (self.span is None or self.span[0] <= item["bucket"] < self.span[1])
        ]


def _bar(
    session: Session,
    actor: Actor,
    name: str,
    *,
    metric: str,
    period: str | None,
    bucket: str | None,
    preset: str,
    start: date | None,
    end: date | None,
    filters: Filters | None,
    business_hours: bool,
) -> _Bar:
    if name not in DRILLABLE:
        raise NotFound(f"No report {name!r} with lists.", details={"reports": list(DRILLABLE)})
    if metric not in DRILLABLE[name]:
        raise ValidationFailed.field("metric", f"must be one of {', '.join(DRILLABLE[name])}")
    window = check_range(preset, start, end, today_in(session, actor.workspace_id))
    chosen = check_filters(session, actor, filters or Filters())
    in_hours = check_business_hours(session, actor.workspace_id, name, business_hours)
    first, last = _hours(window, period)
    span = _bucket_span(bucket) if bucket is not None else None
    stored_metric = rollups.in_business_hours(metric) if in_hours else metric
    return _Bar(name, metric, period, bucket, window, chosen, in_hours, stored_metric, first, last, span)


def _listed(item: Any) -> dict[str, Any]:
    """An item (a stored row or a pending one) as a list shows it."""
    if isinstance(item, dict):
        return {k: item[k] for k in ("conversation_id", "at", "seconds", "channel_id")}
    return {
        "conversation_id": item.conversation_id,
        "at": item.at,
        "seconds": item.seconds,
        "channel_id": item.channel_id,
    }


def _answer(session: Session, actor: Actor, bar: _Bar) -> dict[str, Any]:
    return {
        "report": bar.name,
        "metric": bar.metric,
        "period": bar.period,
        "bucket": bar.bucket,
        "timezone": zone_of(session, actor.workspace_id).key,
        "range": {"preset": bar.window.preset, "from": bar.window.first.isoformat(), "to": bar.window.last.isoformat()},
        "filters": bar.filters.as_query(),
        "business_hours": bar.business_hours,
    }


def drill_down(
    session: Session,
    actor: Actor,
    name: str,
    *,
    metric: str,
    period: str | None = None,
    bucket: str | None = None,
    preset: str = "last_7_days",
    start: date | None = None,
    end: date | None = None,
    filters: Filters | None = None,
    business_hours: bool = False,
) -> dict[str, Any]:
    """The occurrences behind one bar of a report, with the report's range and filters: `count` is
    the bar's number (rollups and items are written together, pending events added alike) and
    `items` the first DRILL_LIMIT of them, oldest first, with their conversations (`total` is the
    count again, `truncated` whether items holds fewer). With `business_hours`, a time's buckets
    and seconds are its business-hours ones."""
    bar = _bar(
        session,
        actor,
        name,
        metric=metric,
        period=period,
        bucket=bucket,
        preset=preset,
        start=start,
        end=end,
        filters=filters,
        business_hours=business_hours,
    )
    workspace_id = actor.workspace_id
    with _snapshot(session) as snapshot:
        stored_count = repository.count_items(
            snapshot, workspace_id, bar.stored_metric, bar.first, bar.last, bar.filters, bar.span
        )
        stored = repository.items(
            snapshot, workspace_id, bar.stored_metric, bar.first, bar.last, bar.filters, bar.span, limit=DRILL_LIMIT
        )
        pending = bar.pending(snapshot, workspace_id)
        # Read now: the snapshot's rollback expires its rows.
        found = [_listed(item) for item in stored]
    found += [_listed(item) for item in pending][: max(0, DRILL_LIMIT - len(found))]
    total = stored_count + len(pending)
    return {
        **_answer(session, actor, bar),
        "count": total,
        "total": total,
        "truncated": len(found) < total,
        "items": found,
    }


# The rows a list's CSV reads at a time: the file holds every item, never all of them in memory.
DRILL_PAGE = 1000


def drill_down_pages(
    session: Session,
    actor: Actor,
    name: str,
    *,
    metric: str,
    period: str | None = None,
    bucket: str | None = None,
    preset: str = "last_7_days",
    start: date | None = None,
    end: date | None = None,
    filters: Filters | None = None,
    business_hours: bool = False,
    page_size: int = DRILL_PAGE,
) -> tuple[dict[str, Any], Iterator[list[dict[str, Any]]]]:
    """Every occurrence behind one bar, for its CSV: the answer's head (as `drill_down`'s, without
    the items), checked now so a bad parameter is a 422 before anything is sent, and the items in
    pages, oldest first (keyset on the items' time and id), the events not applied yet last, each
    with its contact's and channel's names (`contact`, `channel`; None when gone). The pages are read
    in one snapshot of their own, opened when the first page is asked for."""
    bar = _bar(
        session,
        actor,
        name,
        metric=metric,
        period=period,
        bucket=bucket,
        preset=preset,
        start=start,
        end=end,
        filters=filters,
        business_hours=business_hours,
    )
    workspace_id = actor.workspace_id
    # The pages read on their own, not on the request's session (which may be gone by then).
    engine = session.get_bind().engine

    def named(snapshot: Session, page: list[dict[str, Any]], channels: dict[int, str]) -> list[dict[str, Any]]:
        contacts = contact_names(snapshot, workspace_id, page)
        return [
            {**item, "contact": contacts.get(item["conversation_id"]), "channel": channels.get(item["channel_id"])}
            for item in page
        ]

    def pages() -> Iterator[list[dict[str, Any]]]:
        with _snapshot_on(engine) as snapshot:
            channels = channel_names(snapshot, workspace_id)
            after: tuple[datetime, int] | None = None
            while True:
                page = repository.items(
                    snapshot,
                    workspace_id,
                    bar.stored_metric,
                    bar.first,
                    bar.last,
                    bar.filters,
                    bar.span,
                    limit=page_size,
                    after=after,
                )
                if page:
                    after = (page[-1].at, page[-1].id)
                    listed = [_listed(item) for item in page]
                    # Rows already read need not stay in the session's identity map.
                    snapshot.expunge_all()
                    yield named(snapshot, listed, channels)
                if len(page) < page_size:
                    break
            pending = [_listed(item) for item in bar.pending(snapshot, workspace_id)]
            if pending:
                yield named(snapshot, pending, channels)

    return _answer(session, actor, bar), pages()


def listed_names(
    session: Session, workspace_id: int, items: Iterable[Mapping[str, Any]]
) -> tuple[dict[int, str], dict[int, str]]:
    """The names a drill-down list shows beside its items (the page and its CSV): each listed
    conversation's contact, and the workspace's channels. A conversation deleted since (with its
    contact) is still counted but has no name here."""
    return contact_names(session, workspace_id, items), channel_names(session, workspace_id)


def contact_names(session: Session, workspace_id: int, items: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """The contact's name of each listed item's conversation."""
    ids = sorted({item["conversation_id"] for item in items})
    return {
        int(cid): " ".join(p for p in (first, last) if p) or f"#{contact_id}"
        for cid, contact_id, first, last in session.execute(
            select(Conversation.id, Contact.id, Contact.first_name, Contact.last_name)
            .join(Contact, Contact.id == Conversation.contact_id)
            .where(Conversation.workspace_id == workspace_id, Conversation.id.in_(ids))
        )
    }


def channel_names(session: Session, workspace_id: int) -> dict[int, str]:
    return {
        int(i): str(n)
        for i, n in session.execute(select(Channel.id, Channel.name).where(Channel.workspace_id == workspace_id))
    }
