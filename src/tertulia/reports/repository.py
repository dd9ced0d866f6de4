"""The reports' SQL: the consumer's cursor and upserts, and the grouped reads of the rollups."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    delete,
    distinct,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tertulia.contacts.models import ContactTag
from tertulia.reports.models import (
    LABELLED_METRICS,
    LABELLED_WHERE,
    ConversationFact,
    ReportCursor,
    ReportItem,
    Rollup,
)

CURSOR = "reports"
KEY_COLUMNS = (
    "workspace_id",
    "grain",
    "period",
    "metric",
    "label",
    "channel_id",
    "team_id",
    "user_id",
    "category_id",
    "source",
    "bucket",
)


def _insert(session: Session) -> Any:
    return postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def claim_events(session: Session, last_event_id: int) -> int:
    """Take the cursor's row lock and move the cursor to `last_event_id` if it is below it; the
    position it had: the events above it are new to the rollups. The lock means two workers never
    apply events side by side."""
    position = lock_cursor(session)
    if position < last_event_id:
        session.execute(update(ReportCursor).where(ReportCursor.name == CURSOR).values(last_event_id=last_event_id))
    return position


def cursor_position(session: Session) -> int:
    row = session.get(ReportCursor, CURSOR)
    return row.last_event_id if row is not None else 0


# A rebuild in progress (`reports.rebuild`) is three more rows of the cursor's table, so that it is
# read and changed under the same lock as the cursor: its position in the event log, and the first
# and last local days it rewrites (YYYYMMDD as a number; ALL_FIRST and ALL_LAST for no bound).
REBUILD_POSITION, REBUILD_FIRST, REBUILD_LAST = "rebuild:", "rebuild-from:", "rebuild-to:"
ALL_FIRST, ALL_LAST = 0, 99999999


@dataclass(frozen=True)
class Rebuild:
    workspace_id: int
    position: int
    first_day: int
    last_day: int


def lock_cursor(session: Session) -> int:
    """Take the cursor's row lock (the one `claim_events` takes) for the rest of the transaction, so
    the live consumer waits; its position."""
    moved = session.execute(
        update(ReportCursor).where(ReportCursor.name == CURSOR).values(last_event_id=ReportCursor.last_event_id)
    )
    if moved.rowcount == 0:  # type: ignore[attr-defined]
        session.add(ReportCursor(name=CURSOR, last_event_id=0))
        session.flush()
    return cursor_position(session)


def rebuilding_workspaces(session: Session) -> frozenset[int]:
    """The workspaces being rebuilt, read once per transaction: the consumer asks after claiming an
    event, so it holds the cursor's lock and no rebuild can start or end before it commits."""
    found: frozenset[int] | None = session.info.get("report_rebuilds")
    if found is None:
        names = session.scalars(select(ReportCursor.name).where(ReportCursor.name.startswith(REBUILD_POSITION)))
        found = frozenset(int(name.removeprefix(REBUILD_POSITION)) for name in names)
        session.info["report_rebuilds"] = found
    return found


def rebuild_of(session: Session, workspace_id: int) -> Rebuild | None:
    rows = {
        row.name: row.last_event_id
        for row in session.scalars(
            select(ReportCursor).where(
                ReportCursor.name.in_([f"{p}{workspace_id}" for p in (REBUILD_POSITION, REBUILD_FIRST, REBUILD_LAST)])
            )
        )
    }
    position = rows.get(f"{REBUILD_POSITION}{workspace_id}")
    if position is None:
        return None
    return Rebuild(
        workspace_id,
        position,
        rows.get(f"{REBUILD_FIRST}{workspace_id}", ALL_FIRST),
        rows.get(f"{REBUILD_LAST}{workspace_id}", ALL_LAST),
    )


def save_rebuild(session: Session, rebuild: Rebuild) -> None:
    values = (
        (REBUILD_POSITION, rebuild.position),
        (REBUILD_FIRST, rebuild.first_day),
        (REBUILD_LAST, rebuild.last_day),
    )
    for prefix, value in values:
        session.merge(ReportCursor(name=f"{prefix}{rebuild.workspace_id}", last_event_id=value))
    session.flush()
    session.info.pop("report_rebuilds", None)


def end_rebuild(session: Session, workspace_id: int) -> None:
    names = [f"{p}{workspace_id}" for p in (REBUILD_POSITION, REBUILD_FIRST, REBUILD_LAST)]
    session.execute(delete(ReportCursor).where(ReportCursor.name.in_(names)))
    session.info.pop("report_rebuilds", None)


def period_bounds(first_day: int, last_day: int) -> tuple[str, str]:
    """The periods of days first..last as [low, high): "2026-11-02" and its hours "2026-11-02T09"
    sort from the day itself up to below the day followed by "U" ("T" < "U")."""

    def day(value: int) -> str:
        text = f"{value:08d}"
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"

    return day(first_day), day(last_day) + "U"


def delete_range(session: Session, workspace_id: int, first_day: int, last_day: int) -> tuple[int, int]:
    """Remove the workspace's rollups (every grain) and items of those local days; how many of each."""
    low, high = period_bounds(first_day, last_day)
    rollups = session.execute(
        delete(Rollup).where(Rollup.workspace_id == workspace_id, Rollup.period >= low, Rollup.period < high)
    )
    items = session.execute(
        delete(ReportItem).where(
            ReportItem.workspace_id == workspace_id, ReportItem.period >= low, ReportItem.period < high
        )
    )
    return int(rollups.rowcount), int(items.rowcount)  # type: ignore[attr-defined]


def delete_facts(session: Session, workspace_id: int) -> int:
    deleted = session.execute(delete(ConversationFact).where(ConversationFact.workspace_id == workspace_id))
    return int(deleted.rowcount)  # type: ignore[attr-defined]


# The consumer's writes go to the tables (Core), not through the ORM's bulk layer: one statement
# compiled once and cached, executed for many rows by the driver. The ORM's bulk insert turned
# every row's every value into a bound parameter object (a third of a batch's time), and one
# multi-row VALUES was compiled anew for every batch (its number of rows differs).
# A mapped class's __table__ is typed as any FROM clause; these are tables.
_ROLLUPS = cast(Table, Rollup.__table__)
_ITEMS = cast(Table, ReportItem.__table__)


def add_rollups(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add each row's count and total to the row with its key (created at zero when missing)."""
    if not rows:
        return
    statement = _insert(session)(_ROLLUPS)
    statement = statement.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={
            "count": _ROLLUPS.c.count + statement.excluded.count,
            "total": _ROLLUPS.c.total + statement.excluded.total,
        },
    )
    session.execute(statement, list(rows))


def add_items(session: Session, items: Sequence[dict[str, Any]]) -> None:
    if items:
        session.execute(insert(_ITEMS), list(items))


def fact(session: Session, conversation_id: int) -> ConversationFact | None:
    return session.get(ConversationFact, conversation_id)


def facts(session: Session, conversation_ids: Sequence[int]) -> list[ConversationFact]:
    return list(session.scalars(select(ConversationFact).where(ConversationFact.conversation_id.in_(conversation_ids))))


def facts_of_contact(session: Session, workspace_id: int, contact_id: int) -> list[ConversationFact]:
    return list(
        session.scalars(
            select(ConversationFact).where(
                ConversationFact.workspace_id == workspace_id, ConversationFact.contact_id == contact_id
            )
        )
    )


@dataclass(frozen=True)
class Filters:
    channel_id: int | None = None
    team_id: int | None = None
    user_id: int | None = None
    category_id: int | None = None
    source: str | None = None
    # A contact tag: not a dimension of the rollups (a contact has many, and they change), so a
    # report filtered on one reads the items of the conversations whose contact has it now.
    tag_id: int | None = None

    def as_query(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @property
    def empty(self) -> bool:
        return not self.as_query()


# Rollups come twice: by every dimension (grains "d" and "h") and as the workspace's totals ("D"
# and "H"), which unfiltered reports read.
TOTALS = {"d": "D", "h": "H"}


# The closing category is known only when a conversation closes: it filters these metrics and
# leaves the others whole.
CATEGORY_METRICS = ("closed", "resolution", "resolution_bh", "closed_contact")
# Metrics with one label per contact (or conversation), read only as distinct labels (`labels_by`)
# from the detailed rows: they get no copy in the workspace's totals, which nothing reads for them.
DETAILED_ONLY = LABELLED_METRICS
# The dimensions a report may group its cells by.
DIMENSIONS = ("channel_id", "category_id", "user_id", "team_id")


def _filter_clauses(filters: Filters, table: Any = Rollup) -> list[ColumnElement[bool]]:
    """The filters as clauses on the rollups, or on the items (`ReportItem`), which have the same
    dimension columns: the drill-down filters exactly as the bar it explains."""
    clauses: list[ColumnElement[bool]] = []
    if filters.channel_id is not None:
        clauses.append(table.channel_id == filters.channel_id)
    if filters.team_id is not None:
        clauses.append(table.team_id == filters.team_id)
    if filters.user_id is not None:
        clauses.append(table.user_id == filters.user_id)
    if filters.source is not None:
        clauses.append(table.source == filters.source)
    if filters.category_id is not None:
        clauses.append(
            or_(
                and_(table.metric.in_(CATEGORY_METRICS), table.category_id == filters.category_id),
                not_(table.metric.in_(CATEGORY_METRICS)),
            )
        )
    return clauses


def row_matches(row: dict[str, Any], filters: Filters) -> bool:
    """`_filter_clauses` for a rollup row held in memory (`rollups.pending_rows`)."""
    for name in ("channel_id", "team_id", "user_id", "source"):
        wanted = getattr(filters, name)
        if wanted is not None and row[name] != wanted:
            return False
    return not (
        filters.category_id is not None
        and row["metric"] in CATEGORY_METRICS
        and row["category_id"] != filters.category_id
    )


@dataclass(frozen=True)
class Cell:
    period: str
    metric: str
    label: str
    bucket: int
    count: int
    total: float
    # The value of the dimension the cells were grouped by (repository.cells' `by`), else 0.
    key: int = 0


# The period of a cell summed over its whole range (`cells(..., whole=True)`).
WHOLE = ""


def _range_clauses(
    workspace_id: int, grain: str, first: str, last: str, metrics: Iterable[str], filters: Filters
) -> list[ColumnElement[bool]]:
    return [
        Rollup.workspace_id == workspace_id,
        Rollup.grain == grain,
        Rollup.period >= first,
        Rollup.period <= last,
        Rollup.metric.in_(sorted(set(metrics))),
        *_filter_clauses(filters),
    ]


def cells(
    session: Session,
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metrics: Iterable[str],
    filters: Filters,
    *,
    by: str | None = None,
    whole: bool = False,
) -> list[Cell]:
    """Sums of the rollups of `metrics` with periods first..last (inclusive), by period, metric,
    label and bucket (and one dimension of DIMENSIONS when `by` names it). `whole`: not by period,
    one cell per metric, label and bucket for the whole range (period WHOLE), for the numbers that
    add up the range: a year by day is hundreds of times the rows."""
    group: list[Any] = [Rollup.metric, Rollup.label, Rollup.bucket]
    if not whole:
        group.insert(0, Rollup.period)
    if by is not None:
        group.append(getattr(Rollup, by))
    query = (
        select(*group, func.sum(Rollup.count), func.sum(Rollup.total))
        .where(*_range_clauses(workspace_id, grain, first, last, metrics, filters))
        .group_by(*group)
    )
    return _cells(session, query, by, whole)


def _label_pairs(
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metric: str,
    filters: Filters,
    column: str,
    labels: Sequence[str] | None = None,
) -> Select[Any]:
    """The different (dimension value, label) pairs of `metric` over periods first..last whose
    counts add up to more than zero; only these `labels` when given."""
    dimension = getattr(Rollup, column)
    clauses = _range_clauses(workspace_id, grain, first, last, [metric], filters)
    if labels is not None:
        clauses.append(Rollup.label.in_(labels))
    if metric in LABELLED_METRICS:
        # The partial index's own condition, word for word, so both databases know it applies.
        clauses.append(and_(text(LABELLED_WHERE)))
    return (
        select(dimension.label("key"), Rollup.label.label("label"))
        .where(*clauses)
        .group_by(dimension, Rollup.label)
        .having(func.sum(Rollup.count) > 0)
    )


# Labels asked for by name at a time (`labels_by`'s `labels`): well within both databases' limits
# on a statement's parameters.
LABELS_AT_ONCE = 1000


def labels_by(
    session: Session,
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metric: str,
    filters: Filters,
    column: str,
    labels: Iterable[str] | None = None,
) -> set[tuple[int, str]]:
    """The different labels of `metric` over periods first..last, with the value of one dimension:
    distinct counts (the contacts closed, per person) that sums cannot give. Only these `labels`
    when given (which of the events not applied yet are already counted)."""
    if labels is None:
        query = _label_pairs(workspace_id, grain, first, last, metric, filters, column)
        return {(int(value), str(label)) for value, label in session.execute(query)}
    wanted = sorted(set(labels))
    found: set[tuple[int, str]] = set()
    for at in range(0, len(wanted), LABELS_AT_ONCE):
        chunk = wanted[at : at + LABELS_AT_ONCE]
        query = _label_pairs(workspace_id, grain, first, last, metric, filters, column, chunk)
        found.update((int(value), str(label)) for value, label in session.execute(query))
    return found


def label_counts(
    session: Session,
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metric: str,
    filters: Filters,
    column: str,
) -> dict[int, int]:
    """How many of `labels_by`'s pairs each value of the dimension has, counted by the database: a
    year has one pair per conversation replied to, too many to bring over one by one."""
    pairs = _label_pairs(workspace_id, grain, first, last, metric, filters, column).subquery()
    query = select(pairs.c.key, func.count()).group_by(pairs.c.key)
    return {int(value): int(count) for value, count in session.execute(query)}


def label_count(
    session: Session,
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metric: str,
    filters: Filters,
    column: str,
) -> int:
    """How many different labels `labels_by`'s pairs have, whatever the dimension's value (a
    contact closed by two people is one contact)."""
    pairs = _label_pairs(workspace_id, grain, first, last, metric, filters, column).subquery()
    return int(session.scalar(select(func.count(distinct(pairs.c.label)))) or 0)


def breakdown(
    session: Session,
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metrics: Iterable[str],
    filters: Filters,
    column: str,
) -> dict[tuple[int, str], int]:
    """Counts of `metrics` by one dimension (`channel_id`, `category_id`) over periods first..last."""
    dimension = getattr(Rollup, column)
    query = (
        select(dimension, Rollup.metric, func.sum(Rollup.count))
        .where(*_range_clauses(workspace_id, grain, first, last, metrics, filters))
        .group_by(dimension, Rollup.metric)
    )
    return {(int(value), str(metric)): int(count or 0) for value, metric, count in session.execute(query)}


def _tag_clauses(workspace_id: int, filters: Filters) -> list[ColumnElement[bool]]:
    """The items of conversations whose contact has the tag now (the fact row follows a merge to
    the surviving contact)."""
    if filters.tag_id is None:
        return []
    tagged = (
        select(ConversationFact.conversation_id)
        .join(ContactTag, ContactTag.contact_id == ConversationFact.contact_id)
        .where(ConversationFact.workspace_id == workspace_id, ContactTag.tag_id == filters.tag_id)
    )
    return [ReportItem.conversation_id.in_(tagged)]


def tagged_contacts(session: Session, tag_id: int, contact_ids: Iterable[int]) -> set[int]:
    """Which of these contacts have the tag now."""
    wanted = sorted(set(contact_ids))
    if not wanted:
        return set()
    query = select(ContactTag.contact_id).where(ContactTag.tag_id == tag_id, ContactTag.contact_id.in_(wanted))
    return {int(contact_id) for contact_id in session.scalars(query)}


def item_cells(
    session: Session,
    workspace_id: int,
    grain: str,
    first: str,
    last: str,
    metrics: Iterable[str],
    filters: Filters,
    *,
    by: str | None = None,
    whole: bool = False,
) -> list[Cell]:
    """`cells` added up from the items instead of the rollups (each item is one increment of its
    rollup, with the same period, dimensions, label and bucket), so the tag filter can apply. Items
    are kept by the hour: a day is the first 10 characters of the hour."""
    period: Any = ReportItem.period if grain == "h" else func.substr(ReportItem.period, 1, 10)
    low, high = (first, last) if grain == "h" else (f"{first}T00", f"{last}T23")
    group: list[Any] = [ReportItem.metric, ReportItem.label, ReportItem.bucket]
    if not whole:
        group.insert(0, period)
    if by is not None:
        group.append(getattr(ReportItem, by))
    query = (
        select(*group, func.count(), func.sum(func.coalesce(ReportItem.seconds, 0.0)))
        .where(
            ReportItem.workspace_id == workspace_id,
            ReportItem.metric.in_(sorted(set(metrics))),
            ReportItem.period >= low,
            ReportItem.period <= high,
            *_filter_clauses(filters, ReportItem),
            *_tag_clauses(workspace_id, filters),
        )
        .group_by(*group)
    )
    return _cells(session, query, by, whole)


def _item_query(
    workspace_id: int, metric: str, first: str, last: str, filters: Filters, buckets: tuple[int, int] | None
) -> list[ColumnElement[bool]]:
    clauses = [
        ReportItem.workspace_id == workspace_id,
        ReportItem.metric == metric,
        ReportItem.period >= first,
        ReportItem.period <= last,
        *_filter_clauses(filters, ReportItem),
        *_tag_clauses(workspace_id, filters),
    ]
    if buckets is not None:
        clauses += [ReportItem.bucket >= buckets[0], ReportItem.bucket < buckets[1]]
    return clauses


def count_items(
    session: Session,
    workspace_id: int,
    metric: str,
    first: str,
    last: str,
    filters: Filters,
    buckets: tuple[int, int] | None = None,
) -> int:
    clauses = _item_query(workspace_id, metric, first, last, filters, buckets)
    return int(session.scalar(select(func.count()).select_from(ReportItem).where(*clauses)) or 0)


def items(
    session: Session,
    workspace_id: int,
    metric: str,
    first: str,
    last: str,
    filters: Filters,
    buckets: tuple[int, int] | None = None,
    limit: int = 1000,
    after: tuple[datetime, int] | None = None,
) -> list[ReportItem]:
    """The items of `metric` with local hours first..last (inclusive, "YYYY-MM-DDTHH"), filtered as
    the rollups are, in time order (then id); `buckets` (low, high) keeps histogram buckets
    low <= b < high; `after` (an item's time and id) starts past that item, for reading in pages."""
    clauses = _item_query(workspace_id, metric, first, last, filters, buckets)
    if after is not None:
        at, item_id = after
        clauses.append(or_(ReportItem.at > at, and_(ReportItem.at == at, ReportItem.id > item_id)))
    query = select(ReportItem).where(*clauses)
    return list(session.scalars(query.order_by(ReportItem.at, ReportItem.id).limit(limit)))


def _cells(session: Session, query: Select[Any], by: str | None, whole: bool) -> list[Cell]:
    """The rows of a grouped query ([period unless `whole`], metric, label, bucket, [the `by`
    dimension], count, total)."""
    at = 0 if whole else 1
    return [
        Cell(
            period=WHOLE if whole else row[0],
            metric=row[at],
            label=row[at + 1],
            bucket=int(row[at + 2]),
            key=int(row[at + 3]) if by is not None else 0,
            count=int(row[-2] or 0),
            total=float(row[-1] or 0.0),
        )
        for row in session.execute(query)
    ]
