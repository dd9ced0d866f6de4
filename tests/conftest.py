"""Test fixtures. Every test that takes `db` runs on SQLite and on PostgreSQL.

PostgreSQL is mandatory when CI=true; elsewhere its runs are skipped, with the reason shown, when
no server answers. With pytest-xdist each worker gets its own SQLite file and PostgreSQL database.
"""

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TMP = Path(tempfile.mkdtemp(prefix="tertulia-tests-"))
# Each process its own data directory, whatever it inherited: xdist workers start with the
# controller's environment, and a shared directory meant one shared SQLite job queue, where one
# worker's consumer took (and, against its own database, skipped) another worker's tasks.
os.environ["TERTULIA_DATA_DIR"] = str(_TMP)
os.environ["TERTULIA_SECRET_KEY"] = "test-secret-key"
os.environ["TERTULIA_ARGON2_TIME_COST"] = "1"
os.environ["TERTULIA_ARGON2_MEMORY_COST"] = "1024"

import psycopg  # noqa: E402
import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import delete, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from tertulia import consumers  # noqa: E402
from tertulia.app import create_app  # noqa: E402
from tertulia.conversations.ingress.callbacks import callback_spool  # noqa: E402
from tertulia.events import tasks as events_tasks  # noqa: E402
from tertulia.kit import queue  # noqa: E402
from tertulia.kit.db import Database  # noqa: E402
from tertulia.kit.settings import Settings  # noqa: E402
from tertulia.migrations import upgrade  # noqa: E402
from tertulia.models import Base  # noqa: E402
from tertulia.provisioning import do_create_workspace_with_owner  # noqa: E402
from tertulia.users.models import Role  # noqa: E402
from tertulia.users.permissions import Actor  # noqa: E402
from tertulia.users.service import do_add_member, do_create_api_token, do_create_user  # noqa: E402
from tertulia.workflows import tasks as workflows_tasks  # noqa: E402

consumers.install()  # as every process does at start: merge hooks and event consumers

POSTGRES_ADMIN = os.environ.get("TERTULIA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def worker_name() -> str:
    # TERTULIA_TEST_NAMESPACE keeps two suites running at once on one machine apart.
    namespace = os.environ.get("TERTULIA_TEST_NAMESPACE", "t")
    return f"{namespace}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def _postgres_url() -> str:
    """A database of this worker's own, created fresh for the run."""
    return fresh_postgres_database(f"tertulia_test_{worker_name()}")


def drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_postgres_database(name: str) -> str:
    """Drop and create database `name`; its SQLAlchemy URL. Skips the test (fails it in CI) when no
    PostgreSQL server answers."""
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and did not answer at {POSTGRES_ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN}: {exc}")
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A database upgraded from empty by the Alembic history (so every test exercises it)."""
    if request.param == "sqlite":
        path = _TMP / f"test-{worker_name()}.db"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        url = _postgres_url()
    upgrade(url)
    database = Database(url)
    if request.param == "postgresql":
        _without_autovacuum(database)
    yield database
    database.dispose()


_TABLES = [table.name for table in Base.metadata.sorted_tables]
# One query that names the tables holding any row: most tests write to a handful of the tables.
_TABLES_WITH_ROWS = " UNION ALL ".join(
    f"SELECT '{name}' FROM (SELECT 1 FROM {name} LIMIT 1) AS probe" for name in _TABLES
)

# The sequences of those tables' identity and serial columns that have handed out a value since
# they were last reset (pg_sequences.last_value is NULL until then).
_USED_SEQUENCES = """
    SELECT format('%I.%I', sequences.schemaname, sequences.sequencename), sequences.start_value
    FROM pg_sequences AS sequences
    JOIN pg_class AS sequence ON sequence.relname = sequences.sequencename AND sequence.relkind = 'S'
    JOIN pg_namespace AS namespace ON namespace.oid = sequence.relnamespace AND namespace.nspname = sequences.schemaname
    JOIN pg_depend AS owner ON owner.objid = sequence.oid AND owner.deptype IN ('a', 'i')
    JOIN pg_class AS owning_table ON owning_table.oid = owner.refobjid
    WHERE sequences.last_value IS NOT NULL AND owning_table.relname = ANY(:tables)
"""


def _without_autovacuum(database: Database) -> None:
    """Tests empty their tables with DELETE (below). Autovacuum would hand the freed space to the
    next test's inserts, and rows read without ORDER BY would come back in another order than
    written, differently from run to run. The tables stay small; nothing needs the space back."""
    with database.transaction() as session:
        for name in _TABLES:
            session.execute(text(f"ALTER TABLE {name} SET (autovacuum_enabled = false)"))


def _empty_all_tables(database: Database) -> None:
    """Leave every table empty and, on PostgreSQL, every identity counting from its start again.
    Only the tables a test wrote to are touched, with DELETE, children before their parents: a
    TRUNCATE ... CASCADE reaches every table that references a filled one (all 60-odd reference
    workspaces) and took 0.16-0.35 s per test on PostgreSQL; these DELETEs take a few milliseconds."""
    spool = callback_spool(database)  # on SQLite, a file of its own
    with spool.database.transaction() as session:
        session.execute(delete(spool.table))
    with database.transaction() as session:
        filled = {name for (name,) in session.execute(text(_TABLES_WITH_ROWS))}
        for name in reversed(_TABLES):
            if name in filled:
                session.execute(text(f"DELETE FROM {name}"))
        if database.dialect == "postgresql":
            for sequence, start in session.execute(text(_USED_SEQUENCES), {"tables": _TABLES}).all():
                session.execute(
                    text("SELECT setval(CAST(:sequence AS regclass), :start, false)"),
                    {"sequence": sequence, "start": start},
                )


def _timer_threads_finished(timeout: float = 60.0) -> None:
    """Wait for the timer threads (trailing nudges) that had already started their dispatch or advance.
    One left running into the next test would work on that test's rows with this test's numbers: on
    PostgreSQL the identities count from the start again, so a dispatch that took its horizon here
    (event 57) and its lease there would move a consumer past events the next test has not yet written."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"background work still running after {timeout} s: {thread.name}"


def _empty_after_the_test(database: Database) -> None:
    """Empty the tables once the test's background work is quiet. A dispatch or an advance that a
    timer thread started just before the end can still hold row locks; PostgreSQL may then pick
    the clean-up as a deadlock victim, and another attempt finds the work done."""
    with events_tasks.nudges_paused(), workflows_tasks.nudges_paused():
        _timer_threads_finished()
        for attempt in range(5):
            try:
                _empty_all_tables(database)
                return
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def db(migrated_database: Database) -> Iterator[Database]:
    # Queued tasks (mail, imports, segment counts, the outbox) run inline, right after the commit
    # that queued them, against this database: a test sees their effect without waiting, and none
    # is left running to touch the next test's rows. Tests of the consumers themselves turn it off.
    queue.huey.immediate = True
    queue.use_database(migrated_database)
    yield migrated_database
    queue.huey.immediate = False
    queue.use_database(None)
    _empty_after_the_test(migrated_database)


@pytest.fixture
def settings() -> Settings:
    # No presence sweeps behind a test's back: tests that want one run it (tests/users/test_presence.py).
    return Settings(api_rate_limit_per_minute=100_000, presence_sweep_seconds=0)


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class Tenant:
    """A workspace with an owner, a manager, an agent and an API token, ready for tests."""

    workspace_id: int
    owner_id: int
    manager_id: int
    agent_id: int
    token: str
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def actor(self, role: Role = Role.OWNER) -> Actor:
        user_id = {Role.OWNER: self.owner_id, Role.MANAGER: self.manager_id, Role.AGENT: self.agent_id}[role]
        return Actor(workspace_id=self.workspace_id, kind="user", user_id=user_id, role=role)


@pytest.fixture
def make_tenant(db: Database) -> Callable[..., Tenant]:
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, **workspace: Any) -> Tenant:
        n = next(counter)
        name = name or f"Workspace {n}"
        with db.transaction() as session:
            created = do_create_workspace_with_owner(
                session, name, f"owner{n}-{abs(hash(name)) % 10_000}@example.com", "owner-password", **workspace
            )
            ws = created.workspace.id
            manager = do_create_user(session, f"manager{n}-{ws}@example.com", "manager-password")
            do_add_member(session, ws, manager.id, Role.MANAGER)
            agent = do_create_user(session, f"agent{n}-{ws}@example.com", "agent-password")
            do_add_member(session, ws, agent.id, Role.AGENT)
            token = do_create_api_token(session, ws, "tests").secret
            return Tenant(ws, created.owner.id, manager.id, agent.id, token, name)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant(default_country="MX", timezone="America/Mexico_City")


@pytest.fixture
def no_background_work() -> Iterator[None]:
    """For tests that feed event consumers and run the workflow runner by hand: their writes would
    otherwise ask for a dispatch and an advance, which timer threads run a moment later (inline, with
    the tests' immediate queue), racing the test for the same consumer lease and run rows."""
    with events_tasks.nudges_paused(), workflows_tasks.nudges_paused():
        yield
