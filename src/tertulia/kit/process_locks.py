"""Locks that one process holds, against every other process using the same database, for as long
as it lives: who keeps a long-running job (an email channel's IDLE connection) when several
workers run.

- PostgreSQL: session advisory locks (`pg_try_advisory_lock(namespace, id)`) on one connection of
  the holder's own, outside the pool. The server lets go of them when that connection ends, so a
  holder that dies (kill -9, a lost machine once TCP gives up) frees its locks without an expiry to
  wait for; `alive()` notices a lost connection, after which the holder must stop what the locks
  guarded (another process may have taken them).
- SQLite in a file: `flock` on one file per id in a directory beside the database (every process
  sharing an SQLite database runs on its machine). The kernel drops the lock with the process.
- Anything else (an in-memory SQLite): locks within this process only.

Nothing is written to the database, so holding a lock costs no writes and no heartbeat.
"""

import contextlib
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tertulia.kit.db import sidecar_url

log = structlog.get_logger()

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: locks within the process only
    fcntl = None  # type: ignore[assignment]

_INT4 = 2**31


def _key(namespace: str) -> int:
    """PostgreSQL's two-key advisory locks take int4s: the namespace's CRC, signed."""
    value = zlib.crc32(namespace.encode())
    return value - 2**32 if value >= _INT4 else value


class ProcessLocks:
    """The locks one holder takes in `namespace` (one id each). Not thread-safe: one thread (the
    holder's supervisor) calls it."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.held: set[int] = set()
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._files: dict[int, int] = {}
        # Set when the connection holding locks was lost, until `alive()` reports it.
        self._lost = False
        file_url = sidecar_url(url, f"locks-{namespace}")
        self._directory = Path(file_url.split("///", 1)[1]) if file_url and fcntl is not None else None
        self._postgres = url.startswith("postgresql")

    # ----- PostgreSQL ------------------------------------------------------------------------------

    def _pg(self) -> Connection:
        if self._connection is None:
            if self._engine is None:
                # Its own connection, never pooled: a pooled one handed back would keep the locks.
                # Keepalives and a TCP user timeout make a dead link fail `alive()` in seconds.
                connect_args: dict[str, Any] = {
                    "connect_timeout": 10,
                    "keepalives": 1,
                    "keepalives_idle": 10,
                    "keepalives_interval": 5,
                    "keepalives_count": 3,
                    "tcp_user_timeout": 20_000,
                }
                self._engine = create_engine(self.url, poolclass=NullPool, connect_args=connect_args)
            self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _pg_lost(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()
        self._connection = None
        self._lost = self._lost or bool(self.held)
        self.held.clear()

    # ----- the holder's calls ----------------------------------------------------------------------

    def claim(self, ids: list[int]) -> set[int]:
        """Takes whichever of `ids` nobody holds; returns those now held by this holder (new ones)."""
        wanted = [i for i in ids if i not in self.held]
        if not wanted:
            return set()
        taken: set[int] = set()
        if self._postgres:
            small = [i for i in wanted if -_INT4 <= i < _INT4]
            try:
                rows = self._pg().execute(
                    text(
                        "SELECT id FROM (SELECT id, pg_try_advisory_lock(:ns, CAST(id AS integer)) AS held "
                        "FROM unnest(CAST(:ids AS bigint[])) AS id) AS tried WHERE held"
                    ),
                    {"ns": _key(self.namespace), "ids": small},
                )
                taken = {int(row[0]) for row in rows}
            except SQLAlchemyError as exc:
                log.warning("process_locks_lost", namespace=self.namespace, reason=str(exc))
                self._pg_lost()
                return set()
        elif self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            for i in wanted:
                fd = os.open(self._directory / f"{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._files[i] = fd
                taken.add(i)
        else:
            with _local_lock:
                for i in wanted:
                    if (self.namespace, i) not in _local_held:
                        _local_held.add((self.namespace, i))
                        taken.add(i)
        self.held |= taken
        return taken

    def release(self, id_: int) -> None:
        if id_ not in self.held:
            return
        self.held.discard(id_)
        if self._postgres:
            if self._connection is None:
                return
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": _key(self.namespace), "id": id_}
                )
            except SQLAlchemyError:
                self._pg_lost()
        elif id_ in self._files:
            fd = self._files.pop(id_)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        else:
            with _local_lock:
                _local_held.discard((self.namespace, id_))

    def alive(self) -> bool:
        """Whether the locks this holder took are still its own (PostgreSQL: the connection answers).
        False once they were lost: `held` is then empty, and whatever they guarded must stop."""
        if self._lost:
            self._lost = False
            return False
        if not self._postgres or self._connection is None:
            return True
        try:
            self._connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError as exc:
            log.warning("process_locks_lost", namespace=self.namespace, reason=str(exc))
            self._pg_lost()
            self._lost = False
            return False

    def close(self) -> None:
        for id_ in list(self.held):
            self.release(id_)
        if self._connection is not None:
            self._pg_lost()
        self._lost = False
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


_local_lock = threading.Lock()
_local_held: set[tuple[str, int]] = set()


def held_by_anyone(url: str, namespace: str, ids: list[int]) -> set[int]:
    """Which of `ids` some holder has locked in `namespace` right now (a snapshot)."""
    if not ids:
        return set()
    if url.startswith("postgresql"):
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text(
                        "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                        "AND CAST(classid AS bigint) = :ns AND objsubid = 2"
                    ),
                    {"ns": _key(namespace) & 0xFFFFFFFF},
                )
                locked = {int(row[0]) for row in rows}
        finally:
            engine.dispose()
        return {i for i in ids if i in locked}
    file_url = sidecar_url(url, f"locks-{namespace}")
    if file_url is None or fcntl is None:
        with _local_lock:
            return {i for i in ids if (namespace, i) in _local_held}
    directory = Path(file_url.split("///", 1)[1])
    found: set[int] = set()
    for i in ids:
        path = directory / f"{i}.lock"
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDWR)
        try:
            # A shared probe: it conflicts with a holder's exclusive lock, and two probes do not
            # conflict with each other.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            found.add(i)
        finally:
            os.close(fd)
    return found
