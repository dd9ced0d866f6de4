"""Activity status: chosen by the person, kept by their tabs' leases (memory or Redis), recorded as
periods (SQLite and PostgreSQL)."""

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.app import create_app
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users import presence
from tertulia.users.models import ActivityStatus, StatusPeriod, User
from tertulia.users.presence import (
    LEASE_SECONDS,
    MemoryPresenceStore,
    PresenceStore,
    RedisPresenceStore,
    Tab,
    Tabs,
    derive,
)
from tertulia.users.service import do_set_activity_status
from tertulia.workspaces.models import Workspace
from tests.conftest import Tenant
from tests.conversations.support import sign_in

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def store(request: pytest.FixtureRequest) -> Iterator[PresenceStore]:
    if request.param == "memory":
        yield MemoryPresenceStore()
    else:
        yield RedisPresenceStore(REDIS_URL, f"test-presence-{uuid.uuid4().hex[:8]}")


def _status(db: Database, user_id: int) -> ActivityStatus:
    with db.transaction(write=False) as session:
        return ActivityStatus(session.scalars(select(User.activity_status).where(User.id == user_id)).one())


def _periods(db: Database, user_id: int) -> list[tuple[ActivityStatus, bool]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(select(StatusPeriod).where(StatusPeriod.user_id == user_id).order_by(StatusPeriod.id))
        return [(ActivityStatus(row.status), row.ended_at is None) for row in rows]


# ----- the rule ---------------------------------------------------------------------------------


@given(
    choice=st.sampled_from(list(ActivityStatus)),
    live=st.integers(min_value=0, max_value=3),
    idle=st.one_of(st.none(), st.floats(min_value=0, max_value=7200)),
    away_minutes=st.integers(min_value=1, max_value=60),
)
def test_the_status_shown_follows_the_rule(
    choice: ActivityStatus, live: int, idle: float | None, away_minutes: int
) -> None:
    now = 1_000_000.0
    shown = derive(choice, Tabs(live, None if idle is None else now - idle, 1), now, away_minutes * 60.0)
    if live == 0:
        assert shown == ActivityStatus.OFFLINE
    elif choice != ActivityStatus.ONLINE:
        assert shown == choice  # a manual away/busy/offline is never turned online by activity
    elif idle is not None and idle < away_minutes * 60:
        assert shown == ActivityStatus.ONLINE
    else:
        assert shown == ActivityStatus.AWAY


# ----- leases, in one process and across processes --------------------------------------------


def test_two_tabs_one_closed_then_the_other(store: PresenceStore) -> None:
    now = time.time()
    store.touch(7, "a", 1, active=True, now=now)
    store.touch(7, "b", 1, active=False, now=now)
    assert store.tabs(7, now).live == 2
    store.leave(7, "a")
    assert store.tabs(7, now).live == 1
    assert store.tabs(7, now).last_active == pytest.approx(now)
    store.leave(7, "b")
    assert store.tabs(7, now).live == 0
    assert store.tabs(8, now) == Tabs(0, None, None)


def test_a_lease_not_renewed_runs_out(store: PresenceStore) -> None:
    now = time.time()
    store.touch(7, "dead-process-tab", 3, active=True, now=now)
    store.touch(7, "renewed", 3, active=False, now=now)
    later = now + LEASE_SECONDS - 1
    store.touch(7, "renewed", 3, active=False, now=later)
    assert store.tabs(7, later).live == 2
    expired = now + LEASE_SECONDS + 1
    assert store.tabs(7, expired).live == 1  # the renewed one only
    store.forget_expired(7, expired)
    assert store.user_ids() == {7}
    assert store.tabs(7, later + LEASE_SECONDS + 1).live == 0
    store.forget_expired(7, later + LEASE_SECONDS + 1)
    assert store.user_ids() == set()


# ----- statuses, periods and the sweep ----------------------------------------------------------


def test_tabs_make_a_person_online_and_offline_with_periods(db: Database, tenant: Tenant) -> None:
    store = MemoryPresenceStore()
    laptop = Tab(db, store, tenant.agent_id, tenant.workspace_id, "laptop")
    phone = Tab(db, store, tenant.agent_id, tenant.workspace_id, "phone")
    laptop.arrive()
    phone.arrive()
    assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE
    laptop.leave()
    assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE  # one tab is still open
    phone.leave()
    assert _status(db, tenant.agent_id) == ActivityStatus.OFFLINE
    assert _periods(db, tenant.agent_id) == [(ActivityStatus.ONLINE, False), (ActivityStatus.OFFLINE, True)]
    with db.transaction(write=False) as session:
        assert presence.online_user_ids(session, tenant.workspace_id) == []


def test_inactivity_makes_away_and_activity_brings_back(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        workspace = session.get(Workspace, tenant.workspace_id)
        assert workspace is not None
        workspace.away_after_minutes = 5
    store = MemoryPresenceStore()
    tab = Tab(db, store, tenant.agent_id, tenant.workspace_id, "t")
    tab.arrive()
    for minute in range(1, 5):
        with travel(timedelta(minutes=minute)):
            tab.renew()  # the socket is open, nobody touches it
            assert presence.sweep(db, store) == 0
    assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE
    with travel(timedelta(minutes=5, seconds=1)):
        tab.renew()
        assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE  # until a sweep looks
        assert presence.sweep(db, store) == 1
        assert _status(db, tenant.agent_id) == ActivityStatus.AWAY
        tab.used()
        assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE
    with db.transaction(write=False) as session:
        assert presence.online_user_ids(session, tenant.workspace_id) == [tenant.agent_id]


def test_a_manual_away_or_busy_is_not_turned_online(db: Database, tenant: Tenant) -> None:
    store = MemoryPresenceStore()
    tab = Tab(db, store, tenant.agent_id, tenant.workspace_id, "t")
    tab.arrive()
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        do_set_activity_status(session, user, ActivityStatus.BUSY)
    tab.used()
    assert presence.sweep(db, store) == 0
    assert _status(db, tenant.agent_id) == ActivityStatus.BUSY
    tab.leave()
    assert _status(db, tenant.agent_id) == ActivityStatus.OFFLINE  # no tab: offline, whatever the choice
    tab.arrive()
    assert _status(db, tenant.agent_id) == ActivityStatus.BUSY  # back, still busy as chosen


def test_a_dead_process_leaves_nobody_online_after_its_lease(db: Database, tenant: Tenant) -> None:
    store = MemoryPresenceStore()
    Tab(db, store, tenant.agent_id, tenant.workspace_id, "in-a-process-that-died").arrive()
    survivor = Tab(db, store, tenant.manager_id, tenant.workspace_id, "alive")
    survivor.arrive()
    with travel(timedelta(seconds=LEASE_SECONDS - 5)):
        survivor.renew()
        assert presence.sweep(db, store) == 0
    with travel(timedelta(seconds=LEASE_SECONDS + 1)):
        assert presence.sweep(db, store) == 1
    assert _status(db, tenant.agent_id) == ActivityStatus.OFFLINE
    assert _status(db, tenant.manager_id) == ActivityStatus.ONLINE


def test_time_online_is_the_overlap_of_the_periods(db: Database, tenant: Tenant) -> None:
    store = MemoryPresenceStore()
    tab = Tab(db, store, tenant.agent_id, tenant.workspace_id, "t")
    start = utcnow()
    tab.arrive()
    with travel(timedelta(minutes=30)):
        tab.leave()
    with travel(timedelta(minutes=50)):
        tab.arrive()
    with travel(timedelta(minutes=60)), db.transaction(write=False) as session:
        online = presence.time_in_status(session, tenant.agent_id, start, start + timedelta(minutes=55))
        assert abs(online - timedelta(minutes=35)) < timedelta(seconds=1)
        offline = presence.time_in_status(
            session, tenant.agent_id, start, start + timedelta(minutes=55), ActivityStatus.OFFLINE
        )
        assert abs(offline - timedelta(minutes=20)) < timedelta(seconds=1)


# ----- through the agents' socket ---------------------------------------------------------------


def _wait_for(db: Database, user_id: int, status: ActivityStatus) -> None:
    for _ in range(100):
        if _status(db, user_id) == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"still {_status(db, user_id)}, expected {status}")


def test_two_tabs_through_the_socket_one_closed(client: TestClient, db: Database, tenant: Tenant) -> None:
    agent = sign_in(db, tenant)
    cookie = {"cookie": agent.headers["Cookie"]}
    with client.websocket_connect("/ws?personal=1", headers=cookie) as inbox:
        assert inbox.receive_json()["type"] == "hello"
        assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE
        with client.websocket_connect("/ws?scope=me", headers=cookie) as other_page:
            assert other_page.receive_json()["type"] == "hello"
            other_page.send_json({"type": "ping", "active": True})
            assert other_page.receive_json() == {"type": "pong"}
        time.sleep(0.3)
        assert _status(db, tenant.agent_id) == ActivityStatus.ONLINE  # the inbox tab is still open
        inbox.send_json({"type": "ping", "active": "yes"})
        frames = [inbox.receive_json(), inbox.receive_json()]
        # The inbox saw the person come online (its own dot), then the answer to a bad ping.
        assert frames[0] == {
            "type": "presence.changed",
            "workspace_id": tenant.workspace_id,
            "user_id": tenant.agent_id,
            "data": {"status": "online"},
        }
        assert frames[1]["type"] == "error"
    _wait_for(db, tenant.agent_id, ActivityStatus.OFFLINE)


def test_every_web_process_sweeps_statuses_left_behind(db: Database, tenant: Tenant) -> None:
    """A status shown online with no tab behind it (its process died and this one restarted) goes
    offline at the next sweep of a running app."""
    with db.transaction() as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        presence.set_shown_status(session, user, ActivityStatus.ONLINE)
    app = create_app(Settings(presence_sweep_seconds=0.1), db)
    with TestClient(app):
        _wait_for(db, tenant.agent_id, ActivityStatus.OFFLINE)
