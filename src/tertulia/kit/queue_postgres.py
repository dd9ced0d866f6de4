"""The huey queue on PostgreSQL: `TERTULIA_QUEUE_URL=postgresql://...` (or `postgresql+psycopg://`).

huey ships `PostgresStorage` on psycopg 3: a task table read with
`DELETE ... WHERE id = (SELECT id ... ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING data`, so several `tertulia worker` processes never take the same task; a schedule table
read the same way; key/value and counter tables for results, locks and revocations; one shared
connection per process (behind a lock) for those statements, and one LISTEN connection per worker
thread so an idle worker wakes on `pg_notify` instead of polling. This module adapts it to Tertulia:

- the URL may be the SQLAlchemy one (`postgresql+psycopg://`), so the queue can live in the app's
  own database;
- table names start with the queue name (`tertulia_queue_task`, `..._schedule`, `..._kv`,
  `..._counter`), so two installations can share a database;
- the tables are created (`CREATE TABLE IF NOT EXISTS`) when the first connection opens, not when
  the module is imported, so every CLI command need not reach the database; the DDL runs under an
  advisory lock, because concurrent `CREATE TABLE IF NOT EXISTS` in PostgreSQL can fail on the
  catalog's unique index when several workers start at once.
"""

import hashlib
import re
import threading
from typing import Any

import psycopg
from huey import Huey
from huey.storage import PostgresStorage

URL_SCHEMES = ("postgresql://", "postgresql+psycopg://")

# Longest generated name is "<prefix>_schedule_queue_timestamp" (an index); keep it under 63 bytes.
_MAX_PREFIX = 32


def libpq_url(url: str) -> str:
    """The URL psycopg accepts: SQLAlchemy's `postgresql+psycopg://` scheme becomes `postgresql://`."""
    for scheme in URL_SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url.removeprefix(scheme)
    raise ValueError(f"Not a PostgreSQL queue URL: {url!r} (use postgresql://... or postgresql+psycopg://...)")


def table_prefix(name: str) -> str:
    """`<name>_queue`, reduced to a safe unquoted SQL identifier (lower case, letters, digits, `_`)."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_") or "tertulia"
    if cleaned[0].isdigit():
        cleaned = f"q_{cleaned}"
    return f"{cleaned[:_MAX_PREFIX]}_queue"


class PostgresQueueStorage(PostgresStorage):  # type: ignore[misc]
    """huey's PostgreSQL storage with lazy, serialised table creation (see the module docstring)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        read_timeout: float = 1.0,
        connect_timeout: int = 10,
    ) -> None:
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        prefix = table_prefix(name)
        digest = hashlib.blake2b(f"tertulia-queue-ddl:{prefix}".encode(), digest_size=8).digest()
        self._ddl_lock_key = int.from_bytes(digest, "big", signed=True)
        super().__init__(
            name,
            dsn=libpq_url(url),
            blocking=True,
            read_timeout=read_timeout,
            table_prefix=prefix,
            create_tables=False,
            connect_timeout=connect_timeout,
            application_name=prefix,
        )

    def _connect(self) -> Any:
        # Used for the shared connection and for each thread's LISTEN connection.
        conn = super()._connect()
        if not self._schema_ready:
            try:
                self._create_tables(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    # huey's BaseSqlStorage calls `_create_connection`; PostgresStorage aliases it to its own `_connect`.
    _create_connection = _connect

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._ddl_lock_key,))
                for statement in self.ddl:
                    conn.execute(statement)
            self._schema_ready = True

    def enqueue(self, data: bytes, priority: int | None = None) -> None:
        # After a PostgreSQL restart (or an idle timeout) the shared connection is dead: the first
        # statement on it fails and huey opens a new one for the next. An enqueue is worth that one
        # retry here, or the task would wait for the periodic sweep (an outgoing message, say).
        try:
            super().enqueue(data, priority=priority)
        except psycopg.OperationalError:
            super().enqueue(data, priority=priority)

    def initialize_schema(self) -> None:
        """Create the tables now (they are otherwise created by the first connection)."""
        with self.db():
            pass


class PostgresQueueHuey(Huey):  # type: ignore[misc]
    storage_class = PostgresQueueStorage


def make_postgres_huey(name: str, url: str) -> Huey:
    libpq_url(url)  # reject a wrong URL now, not at the first enqueue
    return PostgresQueueHuey(name, url=url)
