"""Engines and sessions.

SQLite: WAL, busy_timeout, foreign keys on, and `BEGIN IMMEDIATE` for write transactions: with a
deferred BEGIN two writers both read, then one fails "database is locked" when it upgrades its lock.
Read-only work keeps a deferred BEGIN so readers never queue behind writers.

Within one process, write transactions on SQLite also take turns through a first-come, first-served
gate before `BEGIN IMMEDIATE`. SQLite's own busy handler polls with growing sleeps (up to 100 ms), so
a thread that commits and begins again at once (a queue task writing batch after batch) kept the lock
for seconds while a waiting writer slept: provider callbacks waited seconds to be stored. The gate
hands the lock to the longest waiter; other processes still meet on the busy timeout.
"""

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from tertulia.kit import realtime
from tertulia.kit.errors import TooSlow
from tertulia.kit.settings import get_settings

WRITE_OPTION = "tertulia_write"
POOL_SIZE = 10
POOL_OVERFLOW = 20
# Connections a Database may hold at once; request sessions are capped below it (kit.http).
MAX_CONNECTIONS = POOL_SIZE + POOL_OVERFLOW
DATABASE_INFO = "tertulia_database"
WRITE_GATE_INFO = "tertulia_write_gate"
BUSY_TIMEOUT_SECONDS = 30


class FairLock:
    """A lock handed to its waiters in arrival order (threading.Lock lets the releasing thread take it
    straight back)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout):
            return True  # handed over by release()
        with self._mutex:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                return False
        return True  # handed over between the timeout and the mutex

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # still held: now by the waiter
            else:
                self._held = False


def sidecar_url(url: str, name: str) -> str | None:
    """For an SQLite database in a file, the URL of a second file beside it (`<file>-<name>`), for data
    whose writes must not wait for the database's one write lock; None for any other database, which
    has no such lock."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return f"{url.split('///', 1)[0]}///{path}-{name}"


def make_engine(url: str, *, echo: bool = False, enforce_foreign_keys: bool = True) -> Engine:
    """`enforce_foreign_keys=False` is for migrations on SQLite only: a batch migration recreates a
    table and drops the old one, and with enforcement on that DROP cascades to every child row."""
    if url.startswith("sqlite"):
        return _make_sqlite_engine(url, echo=echo, enforce_foreign_keys=enforce_foreign_keys)
    return create_engine(
        url, echo=echo, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_pre_ping=True, pool_timeout=30
    )


def _make_sqlite_engine(url: str, *, echo: bool, enforce_foreign_keys: bool) -> Engine:
    database = url.split("///", 1)[1] if "///" in url else ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
    )

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if enforce_foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-64000")
        cursor.close()

    write_gate = FairLock()

    def open_gate(info: dict[Any, Any]) -> None:
        if info.pop(WRITE_GATE_INFO, False):
            write_gate.release()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        if not connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN")
            return
        if not write_gate.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            raise exc.OperationalError("BEGIN IMMEDIATE", None, TimeoutError("database is locked"))
        connection.info[WRITE_GATE_INFO] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            open_gate(connection.info)
            raise

    @event.listens_for(engine, "commit")
    def on_commit_event(connection: Connection) -> None:
        open_gate(connection.info)

    @event.listens_for(engine, "rollback")
    def on_rollback_event(connection: Connection) -> None:
        open_gate(connection.info)

    @event.listens_for(engine, "reset")
    def on_reset(_dbapi_connection: Any, record: Any, _state: Any) -> None:
        open_gate(record.info)  # returned to the pool without a commit or rollback

    @event.listens_for(engine, "invalidate")
    def on_invalidate(_dbapi_connection: Any, record: Any, _error: Any) -> None:
        open_gate(record.info)

    return engine


class Database:
    """One engine plus two session factories: deferred (reads) and immediate (writes)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        # Each session knows its Database, so work started on commit can open its own transactions.
        info = {DATABASE_INFO: self}
        self._read = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._write = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False, info=info
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, write: bool = True) -> Session:
        return (self._write if write else self._read)()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """The unit of work: commit on success, roll back on any exception."""
        session = self.session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


@lru_cache
def get_database() -> Database:
    settings = get_settings()
    return Database(settings.resolved_database_url(), echo=settings.sql_echo)


def database_of(session: Session) -> Database:
    """The Database a session was opened from (sessions made by `Database.session`)."""
    database = session.info.get(DATABASE_INFO)
    if not isinstance(database, Database):
        raise RuntimeError("this session was not opened through a tertulia Database")
    return database


_ON_COMMIT = "on_commit"
_ON_COMMIT_MARKS = "on_commit_savepoint_marks"
_ON_COMMIT_ROLLED_BACK = "on_commit_savepoints_rolled_back"
# `session.info` lists that a rolled-back savepoint trims back to what they held when it began.
_SAVEPOINT_SCOPED: list[str] = [_ON_COMMIT]


def savepoint_scoped(key: str) -> None:
    """Declare `session.info[key]` a list of things done in the transaction (the event log's pending
    events): a savepoint that rolls back, or whose flush fails, removes what was appended inside it
    and nothing else, as it does for `on_commit` callbacks. Call once, at import."""
    if key not in _SAVEPOINT_SCOPED:
        _SAVEPOINT_SCOPED.append(key)


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the outermost transaction commits, after the callbacks registered before it.

    Savepoints (`begin_nested`) do not run callbacks: releasing one is not a commit, and the outer
    transaction may still roll back. A savepoint that rolls back drops the callbacks registered inside
    it (and inside its own savepoints), no others; a rollback of the whole transaction drops them all.
    A callback that raises stops the ones after it, and its error leaves `session.commit()`, the
    transaction already committed."""
    session.info.setdefault(_ON_COMMIT, []).append(callback)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    # Callbacks are appended in order, and a savepoint ends after every savepoint opened inside it, so
    # the callbacks past its mark when it ends are the ones registered inside it.
    if transaction.nested:
        marks = {key: len(session.info.get(key) or ()) for key in _SAVEPOINT_SCOPED}
        session.info.setdefault(_ON_COMMIT_MARKS, {})[transaction] = marks


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    # `after_commit` also fires when a savepoint is released; the outermost transaction has no
    # savepoint open by the time it commits (its commit releases them first).
    if session.in_nested_transaction():
        return
    callbacks = session.info.pop(_ON_COMMIT, [])
    # A transaction's realtime events leave together: one publish for a batch, not one each.
    with realtime.batched():
        for callback in callbacks:
            callback()


@event.listens_for(Session, "after_rollback")
def _note_rolled_back_savepoint(session: Session) -> None:
    # Fired for the database rollback of the innermost savepoint (or of the transaction when there is
    # none), whether asked for or caused by a failed flush inside it. After a failed flush the savepoint
    # object is only closed later, with no `after_soft_rollback` of its own, so it is noted here and
    # its callbacks dropped when it ends.
    savepoint = session.get_nested_transaction()
    if savepoint is not None:
        session.info.setdefault(_ON_COMMIT_ROLLED_BACK, set()).add(savepoint)


@event.listens_for(Session, "after_transaction_end")
def _end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        # A commit has run its callbacks already: whatever is left was rolled back or never committed.
        for key in (_ON_COMMIT, _ON_COMMIT_MARKS, _ON_COMMIT_ROLLED_BACK):
            session.info.pop(key, None)
        return
    if not transaction.nested:
        return  # a flush's inner transaction
    marks: dict[str, int] | None = (session.info.get(_ON_COMMIT_MARKS) or {}).pop(transaction, None)
    rolled_back: set[SessionTransaction] = session.info.get(_ON_COMMIT_ROLLED_BACK) or set()
    if transaction in rolled_back:
        rolled_back.discard(transaction)
        for key, mark in (marks or {}).items():
            done: list[Any] | None = session.info.get(key)
            if done is not None:
                del done[mark:]


@contextmanager
def statement_timeout(session: Session, seconds: float, message: str) -> Iterator[None]:
    """Each statement run inside is cancelled after `seconds`, on both databases, and the
    cancellation raised as TooSlow(`message`) (a 422). PostgreSQL: `statement_timeout`, set for a
    savepoint, so the transaction goes on after a cancel (and the setting ends with the block).
    SQLite: a progress handler that interrupts the statement; the transaction goes on as well."""
    connection = session.connection()
    try:
        if connection.dialect.name == "postgresql":
            with session.begin_nested():
                previous = session.scalar(text("SELECT current_setting('statement_timeout')"))
                session.execute(text("SELECT set_config('statement_timeout', :value, true)"), {"value": _ms(seconds)})
                yield
                session.execute(text("SELECT set_config('statement_timeout', :value, true)"), {"value": previous})
        else:
            sqlite = connection.connection.driver_connection
            assert isinstance(sqlite, sqlite3.Connection)
            deadline = time.monotonic() + seconds
            sqlite.set_progress_handler(lambda: time.monotonic() > deadline, _SQLITE_PROGRESS_STEPS)
            try:
                yield
            finally:
                sqlite.set_progress_handler(None, 0)
    except exc.OperationalError as error:
        if _cancelled(error):
            raise TooSlow(message, details={"timeout_seconds": seconds}) from error
        raise


# SQLite calls the progress handler every this many virtual-machine steps (well under a millisecond).
_SQLITE_PROGRESS_STEPS = 10_000
# SQLSTATE query_canceled: PostgreSQL's statement_timeout.
_QUERY_CANCELED = "57014"


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _cancelled(error: exc.OperationalError) -> bool:
    original = error.orig
    if getattr(original, "sqlstate", None) == _QUERY_CANCELED:
        return True
    return isinstance(original, sqlite3.OperationalError) and str(original) == "interrupted"


@contextmanager
def race_guard(session: Session) -> Iterator[None]:
    """A savepoint around an insert that may lose a uniqueness race, so the caller can recover.
    SQLite write transactions start with BEGIN IMMEDIATE and never run concurrently, so the check made
    just before the insert already decided the race there; the savepoint (two extra statements on the
    hot path of every inbound message) is only needed on PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        yield
        session.flush()
        return
    with session.begin_nested():
        yield
        session.flush()
