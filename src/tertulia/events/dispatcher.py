"""Feeding consumers: each registered consumer reads the log from its own stored position.

Guarantees:
- At least once: a consumer's position moves only after its handler returned for the events up to
  it. A process killed between a commit and the dispatch, or in the middle of a handler, loses
  nothing: the next dispatch (the after-commit nudge of any later write, or the periodic catch-up)
  starts again from the stored position, so an event may be delivered twice, never zero times.
- In order: one consumer sees events in id order, one at a time (or in batches, in order), so in order per conversation
  (changes to one conversation are serialised by its row lock, and a later change's events are
  inserted after the earlier change committed, so they get higher ids).
- Isolation: a consumer whose handler raises is retried with exponential backoff (its position
  stays at the last event it handled, the error is stored); the others carry on.
- One at a time: a dispatcher feeds a consumer only while it holds the lease on the consumer's
  `consumer_positions` row, taken with one atomic `UPDATE ... WHERE lease expired` (same SQL on
  SQLite and PostgreSQL; PostgreSQL re-checks the condition after a concurrent update commits).
  The lease lasts LEASE_SECONDS and is renewed after every batch: a handler must finish a batch
  within it, or another worker may start on the same events. Leases use the workers' clocks, so
  the machines running workers must keep their clocks in sync. A consumer none of whose types lies
  between its position and the horizon is moved to the horizon without a lease, by one conditional
  UPDATE (position unchanged, lease free) that loses nothing: there is nothing of its types to hand over.

The commit-order gap (PostgreSQL). Ids come from a sequence when a row is inserted, but rows become
visible when their transaction commits, and concurrent writers commit in any order: id 41 can become
visible after id 42. A consumer that read 42 and stored position 42 would never see 41. So the
dispatcher reads only up to a *settled* id, below which no transaction can still add an event:

1. read the sequence's last allocated id L, then (in a later statement) the transaction ids of the
   transactions running in this database (`pg_stat_activity.backend_xid`): the set W;
2. a transaction holding an id <= L had allocated it before step 1, and had its transaction id
   before that (`events.service` calls `pg_current_xact_id()` before inserting events); so, if it
   is still running, it is in W;
3. once none of W is running any more, every id <= L is settled: committed and visible, or rolled
   back for good.

Each process keeps the last few (L, W) pairs and re-checks them on every dispatch (polling for a
moment when events are waiting), so delivery usually lags the commit by a few milliseconds. Only
this database's transactions count (a cluster-wide `pg_snapshot_xmin` would also wait for every
other database's transactions). The price: a transaction that runs long in this database holds the
horizon back (delivery waits, nothing is lost); prepared (two-phase) transactions are not seen, and
are not used; every process writing events must connect as a role whose sessions the dispatcher's
role sees in `pg_stat_activity` (the same role, as Tertulia's processes do).

This was chosen over a time-based "visibility delay plus gap tracking", which bets that no
transaction takes longer than the delay and silently skips an event when one does, and over
serialising event writers with a lock, which would serialise the inbox's commits. SQLite has one
writer at a time, so there commit order is id order and every visible id is settled.
"""

import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tertulia.events.models import ConsumerPosition, EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database

log = structlog.get_logger("tertulia.events")

LEASE_SECONDS = 60.0
BATCH_SIZE = 200
MAX_BACKOFF_SECONDS = 300.0
MAX_ERROR_LENGTH = 2000
# How long one dispatch waits for running transactions to end before it reads up to the horizon.
SETTLE_WAIT_SECONDS = 0.5
_SETTLE_POLL_SECONDS = 0.01
_KEPT_CANDIDATES = 64
# A consumer this far behind or less is checked for events of its types in one grouped read before
# a lease is taken for it; further behind, the read would cost more than the lease it saves.
SKIP_SCAN_LIMIT = 5000


@dataclass(frozen=True)
class Consumer:
    """`handle` is called once per event, in id order, outside any transaction of ours: it opens
    its own if it needs one, and must be idempotent (delivery is at least once). `types` limits
    the events it is given (None: all).

    `handle_batch`, when given, takes a whole read (up to BATCH_SIZE events, in id order) at once,
    so a consumer can write their effects in one transaction instead of one per event. It must be
    all or nothing: when it raises, the same events go through `handle` one by one, so a failing
    event is found, the events before it count as handled, and it alone waits for the retry."""

    name: str
    handle: Callable[[EventRecord], None]
    types: frozenset[EventType] | None = None
    retry_base_seconds: float = 1.0
    handle_batch: Callable[[list[EventRecord]], None] | None = None


_registry_lock = threading.Lock()
_consumers: dict[str, Consumer] = {}


def register(consumer: Consumer) -> None:
    with _registry_lock:
        existing = _consumers.get(consumer.name)
        if existing is not None and existing is not consumer:
            raise ValueError(f"another consumer is already registered as {consumer.name!r}")
        _consumers[consumer.name] = consumer


def unregister(name: str) -> None:
    with _registry_lock:
        _consumers.pop(name, None)


def set_consumers(consumers: Iterable[Consumer]) -> None:
    """Replace the registered consumers (the composition module's one call)."""
    chosen = {c.name: c for c in consumers}
    with _registry_lock:
        _consumers.clear()
        _consumers.update(chosen)


def registered() -> list[Consumer]:
    with _registry_lock:
        return list(_consumers.values())


# ----- the horizon ------------------------------------------------------------------------------


class _PostgresHorizon:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (last allocated id, the transactions of this database running just after it was read)
        self._candidates: list[tuple[int, frozenset[int]]] = []
        self._settled = 0

    def observe(self, session: Session) -> tuple[int, int]:
        """(settled id, last allocated id)."""
        last_value, is_called = session.execute(text("SELECT last_value, is_called FROM events_id_seq")).one()
        allocated = int(last_value) if is_called else 0
        running = frozenset(
            int(xid)
            for xid in session.scalars(
                text(
                    "SELECT backend_xid::text::bigint FROM pg_stat_activity "
                    "WHERE datname = current_database() AND backend_xid IS NOT NULL"
                )
            )
        )
        with self._lock:
            if allocated < self._settled:  # the sequence was restarted (tests truncate the table)
                self._settled, self._candidates = 0, []
            self._candidates.append((allocated, running))
            for last_id, waiting in self._candidates:
                if not waiting & running:
                    self._settled = max(self._settled, last_id)
            self._candidates = [c for c in self._candidates if c[0] > self._settled][-_KEPT_CANDIDATES:]
            return self._settled, allocated


_horizons: "weakref.WeakKeyDictionary[Database, _PostgresHorizon]" = weakref.WeakKeyDictionary()
_horizons_lock = threading.Lock()


def settled_horizon(db: Database, wait_seconds: float = SETTLE_WAIT_SECONDS) -> tuple[int, int]:
    """(the id up to which events may be read now, the last id allocated). On PostgreSQL waits up to
    `wait_seconds` for the transactions holding ids above the horizon to end."""
    if db.dialect != "postgresql":
        with db.transaction(write=False) as session:
            newest = int(session.scalar(select(func.max(EventRecord.id))) or 0)
        return newest, newest
    with _horizons_lock:
        horizon = _horizons.setdefault(db, _PostgresHorizon())
    deadline = time.monotonic() + wait_seconds
    while True:
        with db.transaction(write=False) as session:
            settled, allocated = horizon.observe(session)
        if settled >= allocated or time.monotonic() >= deadline:
            return settled, allocated
        time.sleep(_SETTLE_POLL_SECONDS)


# ----- leases -------------------------------------------------------------------------------


def new_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class _Lease:
    owner: str
    position: int
    attempts: int


def _ensure_position(session: Session, name: str) -> None:
    values = {"name": name, "last_event_id": 0, "attempts": 0, "updated_at": utcnow()}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgres_insert(ConsumerPosition).values(**values).on_conflict_do_nothing())
    else:
        session.execute(sqlite_insert(ConsumerPosition).values(**values).on_conflict_do_nothing())


def start_after_written(session: Session, name: str) -> int:
    """Place consumer `name` after every event this session sees (call `events.service.write_pending`
    first for the transaction's own): for history written as the past, which that consumer must not
    act on now (the demo's seed: its workflows were carried out as the history was written, and a
    server starting must not run them again over it). The position it is given."""
    newest = int(session.scalar(select(func.max(EventRecord.id))) or 0)
    _ensure_position(session, name)
    session.execute(
        update(ConsumerPosition)
        .where(ConsumerPosition.name == name, ConsumerPosition.last_event_id < newest)
        .values(last_event_id=newest, updated_at=utcnow())
    )
    return newest


def _acquire(db: Database, name: str, owner: str) -> _Lease | None:
    now = utcnow()
    with db.transaction() as session:
        for _ in range(2):
            taken = session.execute(
                update(ConsumerPosition)
                .where(
                    ConsumerPosition.name == name,
                    or_(ConsumerPosition.lease_until.is_(None), ConsumerPosition.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_SECONDS))
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                row = session.execute(
                    select(ConsumerPosition.last_event_id, ConsumerPosition.attempts).where(
                        ConsumerPosition.name == name
                    )
                ).one()
                return _Lease(owner, int(row.last_event_id), int(row.attempts))
            if session.get(ConsumerPosition, name) is not None:
                return None  # leased by someone else, or waiting for its retry time
            _ensure_position(session, name)
    return None


def _advance(db: Database, name: str, owner: str, position: int, *, release: bool) -> bool:
    now = utcnow()
    with db.transaction() as session:
        moved = session.execute(
            update(ConsumerPosition)
            .where(ConsumerPosition.name == name, ConsumerPosition.lease_owner == owner)
            .values(
                last_event_id=position,
                attempts=0,
                last_error=None,
                lease_owner=None if release else owner,
                lease_until=None if release else now + timedelta(seconds=LEASE_SECONDS),
                updated_at=now,
            )
        )
        return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def backoff_seconds(consumer: Consumer, attempts: int) -> float:
    """Delay before the retry that follows failure number `attempts` (1, 2, ...)."""
    return float(min(MAX_BACKOFF_SECONDS, consumer.retry_base_seconds * (2 ** max(0, attempts - 1))))


def _fail(db: Database, consumer: Consumer, lease: _Lease, position: int, error: str) -> float:
    attempts = lease.attempts + 1
    delay = backoff_seconds(consumer, attempts)
    now = utcnow()
    with db.transaction() as session:
        session.execute(
            update(ConsumerPosition)
            .where(ConsumerPosition.name == consumer.name, ConsumerPosition.lease_owner == lease.owner)
            .values(
                last_event_id=position,
                attempts=attempts,
                last_error=error[:MAX_ERROR_LENGTH],
                lease_owner=None,
                lease_until=now + timedelta(seconds=delay),
                updated_at=now,
            )
        )
    return delay


# ----- delivering ---------------------------------------------------------------------------


@dataclass
class Delivery:
    consumer: str
    delivered: int = 0
    leased: bool = True
    error: str | None = None
    retry_in: float | None = None


def _read(db: Database, after: int, upto: int, types: frozenset[EventType] | None, limit: int) -> list[EventRecord]:
    query = select(EventRecord).where(EventRecord.id > after, EventRecord.id <= upto)
    if types is not None:
        query = query.where(EventRecord.type.in_(sorted(types)))
    with db.transaction(write=False) as session:
        rows = list(session.scalars(query.order_by(EventRecord.id).limit(limit)))
        session.expunge_all()
    return rows


def deliver(db: Database, consumer: Consumer, upto: int, *, owner: str | None = None) -> Delivery:
    """Feed `consumer` the events after its position up to id `upto` (a settled horizon)."""
    owner = owner or new_owner()
    result = Delivery(consumer.name)
    lease = _acquire(db, consumer.name, owner)
    if lease is None:
        result.leased = False
        return result
    position = lease.position
    while position < upto:
        rows = _read(db, position, upto, consumer.types, BATCH_SIZE)
        handled = position
        one_by_one = rows
        if _handled_as_a_batch(consumer, rows):
            handled = rows[-1].id
            result.delivered += len(rows)
            one_by_one = []
        for row in one_by_one:
            try:
                consumer.handle(row)
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
                result.retry_in = _fail(db, consumer, lease, handled, result.error)
                log.warning(
                    "event_consumer_failed",
                    consumer=consumer.name,
                    event_id=row.id,
                    attempt=lease.attempts + 1,
                    retry_in=result.retry_in,
                    error=result.error,
                )
                return result
            handled = row.id
            result.delivered += 1
        # A short read means nothing else (of its types) is left up to the horizon.
        next_position = handled if len(rows) == BATCH_SIZE else upto
        done = next_position >= upto
        if not _advance(db, consumer.name, owner, next_position, release=done):
            log.warning("event_consumer_lease_lost", consumer=consumer.name, position=handled)
            return result
        position = next_position
        if done:
            return result
    _advance(db, consumer.name, owner, position, release=True)
    return result


def _handled_as_a_batch(consumer: Consumer, rows: list[EventRecord]) -> bool:
    if consumer.handle_batch is None or len(rows) < 2:
        return False
    try:
        consumer.handle_batch(rows)
    except Exception as exc:
        log.warning(
            "event_consumer_batch_failed",
            consumer=consumer.name,
            first_event_id=rows[0].id,
            last_event_id=rows[-1].id,
            error=f"{type(exc).__name__}: {exc}",
        )
        return False
    return True


@dataclass
class DispatchReport:
    deliveries: list[Delivery] = field(default_factory=list)
    unsettled: bool = False  # events exist above the horizon: dispatch again soon

    @property
    def delivered(self) -> int:
        return sum(d.delivered for d in self.deliveries)

    @property
    def retry_in(self) -> float | None:
        delays = [d.retry_in for d in self.deliveries if d.retry_in is not None]
        return min(delays) if delays else None


def dispatch(
    db: Database,
    consumers: Iterable[Consumer] | None = None,
    *,
    owner: str | None = None,
    settle_wait: float = SETTLE_WAIT_SECONDS,
) -> DispatchReport:
    """One pass: every registered consumer (or those given) is fed up to the current horizon."""
    chosen = registered() if consumers is None else list(consumers)
    report = DispatchReport()
    if not chosen:
        return report
    upto, allocated = settled_horizon(db, settle_wait)
    report.unsettled = allocated > upto
    with db.transaction(write=False) as session:
        positions: dict[str, int] = dict(
            session.execute(
                select(ConsumerPosition.name, ConsumerPosition.last_event_id).where(
                    ConsumerPosition.name.in_([c.name for c in chosen])
                )
            ).all()
        )
        idle = _with_nothing_to_read(session, chosen, positions, upto)
    if idle:
        _skip_ahead(db, idle, upto)
    for consumer in chosen:
        if positions.get(consumer.name, -1) >= upto or consumer.name in idle:
            continue  # up to date: no lease taken, no write
        report.deliveries.append(deliver(db, consumer, upto, owner=owner))
    return report


def _with_nothing_to_read(
    session: Session, chosen: list[Consumer], positions: dict[str, int], upto: int
) -> dict[str, int]:
    """{name: position} of the consumers none of whose types lies after their position up to
    `upto`. Taking a lease, reading nothing and moving the position would cost each of them three
    transactions per pass; outbound replies write only types most consumers ignore."""
    behind = {
        c.name: (positions[c.name], c.types)
        for c in chosen
        if c.types is not None and c.name in positions and 0 < upto - positions[c.name] <= SKIP_SCAN_LIMIT
    }
    if not behind:
        return {}
    lowest = min(position for position, _ in behind.values())
    # The newest id of each type after the lowest position: a consumer has something to read when
    # one of its types has an id after its own position.
    newest = dict(
        session.execute(
            select(EventRecord.type, func.max(EventRecord.id))
            .where(EventRecord.id > lowest, EventRecord.id <= upto)
            .group_by(EventRecord.type)
        ).all()
    )
    return {
        name: position
        for name, (position, types) in behind.items()
        if all(newest.get(str(t), 0) <= position for t in types)
    }


def _skip_ahead(db: Database, idle: dict[str, int], upto: int) -> None:
    """Move each idle consumer's position to `upto`, only if it is where it was read and nobody
    holds its lease (or it waits for a retry): then no event of its types lies in between."""
    now = utcnow()
    by_position: dict[int, list[str]] = {}
    for name, position in idle.items():
        by_position.setdefault(position, []).append(name)
    with db.transaction() as session:
        for position, names in by_position.items():
            session.execute(
                update(ConsumerPosition)
                .where(
                    ConsumerPosition.name.in_(names),
                    ConsumerPosition.last_event_id == position,
                    or_(ConsumerPosition.lease_until.is_(None), ConsumerPosition.lease_until < now),
                )
                .values(last_event_id=upto, updated_at=now)
            )


# ----- lag and retention --------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerStatus:
    name: str
    registered: bool
    last_event_id: int
    behind: int  # events after its position (of its types)
    attempts: int  # consecutive failures
    last_error: str | None
    lease_owner: str | None
    retry_at: datetime | None  # set while waiting to retry after a failure
    updated_at: datetime | None


def consumer_status(db: Database) -> list[ConsumerStatus]:
    """Every consumer with a stored position or registered here, registered ones first."""
    consumers = {c.name: c for c in registered()}
    with db.transaction(write=False) as session:
        positions = {p.name: p for p in session.scalars(select(ConsumerPosition))}
        statuses: list[ConsumerStatus] = []
        for name in sorted(set(consumers) | set(positions), key=lambda n: (n not in consumers, n)):
            position = positions.get(name)
            consumer = consumers.get(name)
            last = position.last_event_id if position else 0
            count = select(func.count()).select_from(EventRecord).where(EventRecord.id > last)
            if consumer is not None and consumer.types is not None:
                count = count.where(EventRecord.type.in_(sorted(consumer.types)))
            statuses.append(
                ConsumerStatus(
                    name=name,
                    registered=consumer is not None,
                    last_event_id=last,
                    behind=int(session.scalar(count) or 0),
                    attempts=position.attempts if position else 0,
                    last_error=position.last_error if position else None,
                    lease_owner=position.lease_owner if position else None,
                    retry_at=position.lease_until if position and position.lease_owner is None else None,
                    updated_at=position.updated_at if position else None,
                )
            )
    return statuses


def newest_event_id(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.max(EventRecord.id))) or 0)


def prune(db: Database, retention_days: float, *, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete events older than `retention_days` that every registered consumer has processed.

    A registered consumer without a stored position yet will read from the start, so while one
    exists nothing is deleted. Positions of consumers no longer registered do not hold events back.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    names = [c.name for c in registered()]
    with db.transaction(write=False) as session:
        positions = dict(
            session.execute(
                select(ConsumerPosition.name, ConsumerPosition.last_event_id).where(ConsumerPosition.name.in_(names))
            ).all()
        )
    if len(positions) < len(names):
        return 0
    processed = min(positions.values()) if positions else None
    deleted = 0
    while True:
        doomed = select(EventRecord.id).where(EventRecord.created_at < cutoff)
        if processed is not None:
            doomed = doomed.where(EventRecord.id <= processed)
        with db.transaction() as session:
            ids = list(session.scalars(doomed.order_by(EventRecord.id).limit(batch)))
            if ids:
                session.execute(delete(EventRecord).where(EventRecord.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch:
            return deleted
