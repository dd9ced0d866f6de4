"""Rebuilding a workspace's report data (facts, rollups and items) from the event log.

The events are replayed through the consumer's own code (`rollups.replay`), so a rebuilt number has
the same definition as a live one. How it stays consistent with the live consumer, which keeps
running (docs/reports.md, "Rebuilding the report data"):

- **Start** (one transaction, holding the cursor's lock): the workspace's rollups and items of the
  chosen local days and all its fact rows are deleted, and the rebuild is marked, at position 0, in
  the cursor's table (`repository.Rebuild`).
- **While marked**, the live consumer moves the cursor past the workspace's events without applying
  them (`rollups.apply_all`): the rebuild applies them.
- **Batches** (one transaction each, holding the cursor's lock): the next `batch_size` events of the
  workspace after the rebuild's position and up to the cursor are replayed; the fact rows are
  written whatever the event's day (later events need them), the rollups and items only for the
  chosen days. The batch that finds fewer events than it asked for has reached the cursor: it
  removes the mark in the same transaction, and the consumer takes the workspace's next event on
  the facts the rebuild left, as if it had applied every event itself.

So every event of the workspace is applied once, by the consumer or by the rebuild, never both;
memory holds one batch. A rebuild that stops half way leaves its mark (the consumer goes on passing
the workspace's events over, and its reports show part of the chosen days): running it again starts
it over, for its days and the new ones together. Two rebuilds of one workspace at once share the
mark and take batches in turn.

Only the days the event log still holds in full can be rebuilt (`earliest_day`): the retention
sweep deletes old events, and rebuilding a day whose events are gone would empty it.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tertulia.events.models import EventRecord
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.reports import repository, rollups
from tertulia.workspaces.models import Workspace

BATCH_SIZE = 500


@dataclass(frozen=True)
class RebuildStart:
    workspace_id: int
    first_day: date | None  # None: no bound
    last_day: date | None
    # The cursor when the rebuild started: the events it has at least to replay end there.
    upto: int
    deleted_rollups: int
    deleted_items: int
    deleted_facts: int


@dataclass(frozen=True)
class RebuildProgress:
    replayed: int  # events replayed so far by this process
    position: int  # the last event replayed
    upto: int  # the cursor now: the rebuild ends once it gets there


@dataclass(frozen=True)
class RebuildSummary:
    start: RebuildStart
    replayed: int
    in_range: int  # the replayed events whose day is rebuilt
    rollup_rows: int  # rollup increments written (before the database merges them by key)
    items: int
    batches: int
    seconds: float


def _day(value: date) -> int:
    return value.year * 10000 + value.month * 100 + value.day


def _as_date(value: int) -> date | None:
    if value in (repository.ALL_FIRST, repository.ALL_LAST):
        return None
    return date(value // 10000, value // 100 % 100, value % 100)


def earliest_day(session: Session, workspace_id: int, retention_days: float, now: datetime | None = None) -> date:
    """The first local day whose events the log surely still holds: the retention sweep only deletes
    events older than `retention_days` (so a day that starts after that is whole), and it deletes
    the oldest first (so a day after the oldest event left is whole too)."""
    zone = rollups.zone_of(session, workspace_id)
    window = (now or utcnow()) - timedelta(days=retention_days)
    local = window.astimezone(zone)
    in_window = local.date() if local.time() == clock_time(0) else local.date() + timedelta(days=1)
    oldest = session.scalar(select(func.min(EventRecord.created_at)))
    if oldest is None:
        return in_window
    return min(in_window, as_utc(oldest).astimezone(zone).date() + timedelta(days=1))


def start(
    db: Database,
    workspace_id: int,
    since: date | None = None,
    until: date | None = None,
    *,
    retention_days: float,
    now: datetime | None = None,
) -> RebuildStart:
    """Check the range, delete the workspace's report data of those days and its facts, and mark the
    rebuild (one transaction). `since` defaults to the first day the log holds whole."""
    with db.transaction() as session:
        return start_in(session, workspace_id, since, until, retention_days=retention_days, now=now)


def start_in(
    session: Session,
    workspace_id: int,
    since: date | None = None,
    until: date | None = None,
    *,
    retention_days: float,
    now: datetime | None = None,
) -> RebuildStart:
    """`start` in the caller's transaction (Settings starts a rebuild in the request's)."""
    if session.get(Workspace, workspace_id) is None:
        raise NotFound(f"No workspace with id {workspace_id}.")
    if since is not None and until is not None and since > until:
        raise ValidationFailed.field("until", f"{until.isoformat()} is before --since {since.isoformat()}.")
    earliest = earliest_day(session, workspace_id, retention_days, now)
    if since is not None and since < earliest:
        raise ValidationFailed.field(
            "since",
            f"the event log holds whole days from {earliest.isoformat()} only (older events are deleted "
            f"after {retention_days:g} days): give {earliest.isoformat()} or later.",
        )
    first, last = _day(since or earliest), _day(until) if until is not None else repository.ALL_LAST
    upto = repository.lock_cursor(session)
    running = repository.rebuild_of(session, workspace_id)
    if running is not None:
        # A rebuild stopped half way (or running now): its days are part rebuilt, so they are
        # rebuilt again with these.
        first, last = min(first, running.first_day), max(last, running.last_day)
    deleted_rollups, deleted_items = repository.delete_range(session, workspace_id, first, last)
    deleted_facts = repository.delete_facts(session, workspace_id)
    repository.save_rebuild(session, repository.Rebuild(workspace_id, 0, first, last))
    return RebuildStart(
        workspace_id, _as_date(first), _as_date(last), upto, deleted_rollups, deleted_items, deleted_facts
    )


@dataclass(frozen=True)
class RebuildState:
    """A rebuild in progress (or stopped half way), as Settings shows it."""

    first_day: date | None
    last_day: date | None
    position: int
    upto: int

    @property
    def percent(self) -> int:
        # Of the event log's ids, not of the workspace's events: counting those would read the log.
        return 100 if self.upto <= 0 else min(99, round(100 * self.position / self.upto))


def state_of(session: Session, workspace_id: int) -> RebuildState | None:
    running = repository.rebuild_of(session, workspace_id)
    if running is None:
        return None
    upto = repository.cursor_position(session)
    return RebuildState(_as_date(running.first_day), _as_date(running.last_day), running.position, upto)


@dataclass(frozen=True)
class _Batch:
    replayed: int
    in_range: int
    rollup_rows: int
    items: int
    position: int
    upto: int
    done: bool


def next_batch(db: Database, workspace_id: int, batch_size: int = BATCH_SIZE) -> _Batch:
    """Replay the rebuild's next events (one transaction, holding the cursor's lock)."""
    with db.transaction() as session:
        upto = repository.lock_cursor(session)
        running = repository.rebuild_of(session, workspace_id)
        if running is None:  # another process running the same rebuild finished it
            return _Batch(0, 0, 0, 0, upto, upto, done=True)
        events = list(
            session.scalars(
                select(EventRecord)
                .where(
                    EventRecord.workspace_id == workspace_id,
                    EventRecord.id > running.position,
                    EventRecord.id <= upto,
                    EventRecord.type.in_(sorted(rollups.TYPES)),
                )
                .order_by(EventRecord.id)
                .limit(batch_size)
            )
        )
        low, high = repository.period_bounds(running.first_day, running.last_day)
        kept = [changes for changes in rollups.replay(session, events) if low <= changes.periods[0][1] < high]
        rollups.write(session, kept)
        position = events[-1].id if events else running.position
        done = len(events) < batch_size
        if done:
            repository.end_rebuild(session, workspace_id)
        else:
            repository.save_rebuild(
                session, repository.Rebuild(workspace_id, position, running.first_day, running.last_day)
            )
        return _Batch(
            len(events),
            len(kept),
            sum(len(changes.rows) for changes in kept),
            sum(len(changes.items) for changes in kept),
            position,
            upto,
            done,
        )


def batches(db: Database, workspace_id: int, batch_size: int = BATCH_SIZE) -> Iterator[_Batch]:
    """A started rebuild's batches, each replayed as it is asked for, until it is done."""
    while True:
        batch = next_batch(db, workspace_id, batch_size)
        yield batch
        if batch.done:
            return


def run_batches(db: Database, workspace_id: int, batch_size: int = BATCH_SIZE) -> int:
    """Replay a started rebuild's batches until it is done; how many events."""
    return sum(batch.replayed for batch in batches(db, workspace_id, batch_size))


def rebuild(
    db: Database,
    workspace_id: int,
    since: date | None = None,
    until: date | None = None,
    *,
    retention_days: float,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_start: Callable[[RebuildStart], None] | None = None,
    on_progress: Callable[[RebuildProgress], None] | None = None,
) -> RebuildSummary:
    """Rebuild the workspace's rollups and items of the local days since..until (either open) and
    its fact rows from the event log; the live consumer may run meanwhile (module docstring)."""
    began = time.monotonic()
    started = start(db, workspace_id, since, until, retention_days=retention_days, now=now)
    if on_start is not None:
        on_start(started)
    replayed = in_range = rollup_rows = items = count = 0
    for batch in batches(db, workspace_id, batch_size):
        count += 1
        replayed += batch.replayed
        in_range += batch.in_range
        rollup_rows += batch.rollup_rows
        items += batch.items
        if on_progress is not None:
            on_progress(RebuildProgress(replayed, batch.position, batch.upto))
    return RebuildSummary(started, replayed, in_range, rollup_rows, items, count, time.monotonic() - began)
