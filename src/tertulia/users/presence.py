"""Activity status: online, away, busy or offline, chosen by the person and kept by their tabs.

Every open tab of Tertulia holds the agents' socket (`conversations/ws.py`). While it is open the
socket holds a *lease* on the person's presence, renewed every RENEW_SECONDS by the process serving
it; a tab that closes gives its lease back at once, and a process that dies stops renewing, so its
tabs count for LEASE_SECONDS more and no longer. Each tab reports whether the person used it
(`{"type": "ping", "active": true}`); the latest use over all tabs is the person's last activity.

The status shown (`users.activity_status`) follows from those and the person's choice
(`users.status_choice`, Profile):
- no live tab: offline, whatever the choice;
- a choice of away, busy or offline: kept as chosen (never turned online by activity);
- a choice of online: away after the workspace's `away_after_minutes` without activity in any tab,
  online again on the next activity.

Leases live in the process (`memory://`, one `tertulia serve`) or in Redis (`redis://`, shared by
every process) as the realtime hub does. The status is re-derived when a tab opens, closes or
becomes active again, and by a sweep in every web process (`sweep`, every SWEEP_SECONDS) that
catches expired leases and inactivity. Every change closes the person's open `user_status_periods`
row and opens one for the new status, so time online over any range can be computed
(`time_in_status`), is published as a realtime `presence.changed` event to the person's
workspaces so inboxes update their dots, and is recorded as a `user.status_changed` event in each
of those workspaces' event log (the workflows' queue wakes on it).

Other modules ask through `online_user_ids` (who can take work now) and `statuses`.
"""

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import redis
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tertulia.events.service import Event, actor_label, emit
from tertulia.events.types import EventType, UserStatusChanged
from tertulia.kit import realtime
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database, on_commit
from tertulia.users.models import ActivityStatus, Membership, StatusPeriod, User
from tertulia.workspaces.models import Workspace

log = structlog.get_logger("tertulia.presence")

LEASE_SECONDS = 75.0
RENEW_SECONDS = 25.0
SWEEP_SECONDS = 15.0
RECHECK_SECONDS = 60.0
DEFAULT_AWAY_MINUTES = 10
PRESENCE_CHANGED = "presence.changed"
# Redis keys of a person who left without a trace (every process gone) expire after this.
_KEY_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Tabs:
    """What the leases say about one person now."""

    live: int
    last_active: float | None  # epoch seconds of the latest activity in any tab
    workspace_id: int | None  # the workspace of the tab seen last (its away time applies)


class PresenceStore(Protocol):
    def touch(self, user_id: int, tab: str, workspace_id: int, *, active: bool, now: float) -> None:
        """Take or renew `tab`'s lease until now + LEASE_SECONDS; `active`: the person used it."""

    def leave(self, user_id: int, tab: str) -> None: ...

    def tabs(self, user_id: int, now: float) -> Tabs: ...

    def user_ids(self) -> set[int]:
        """Everyone with a lease, live or expired and not yet forgotten."""

    def forget_expired(self, user_id: int, now: float) -> None: ...


class MemoryPresenceStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, dict[str, float]] = {}
        self._active: dict[int, float] = {}
        self._workspace: dict[int, int] = {}

    def touch(self, user_id: int, tab: str, workspace_id: int, *, active: bool, now: float) -> None:
        with self._lock:
            self._leases.setdefault(user_id, {})[tab] = now + LEASE_SECONDS
            self._workspace[user_id] = workspace_id
            if active:
                self._active[user_id] = max(now, self._active.get(user_id, now))

    def leave(self, user_id: int, tab: str) -> None:
        with self._lock:
            self._leases.get(user_id, {}).pop(tab, None)

    def tabs(self, user_id: int, now: float) -> Tabs:
        with self._lock:
            live = sum(1 for expiry in self._leases.get(user_id, {}).values() if expiry > now)
            return Tabs(live, self._active.get(user_id), self._workspace.get(user_id))

    def user_ids(self) -> set[int]:
        with self._lock:
            return set(self._leases)

    def forget_expired(self, user_id: int, now: float) -> None:
        with self._lock:
            leases = self._leases.get(user_id, {})
            for tab in [tab for tab, expiry in leases.items() if expiry <= now]:
                del leases[tab]
            if not leases:
                self._leases.pop(user_id, None)


class RedisPresenceStore:
    """A sorted set of tab -> lease expiry per person, their last activity and workspace, and the
    set of people with leases; every process reads and writes the same keys."""

    def __init__(self, url: str, prefix: str = "tertulia") -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._prefix = f"{prefix}:presence"

    def _key(self, kind: str, user_id: int) -> str:
        return f"{self._prefix}:{kind}:{user_id}"

    def touch(self, user_id: int, tab: str, workspace_id: int, *, active: bool, now: float) -> None:
        pipe = self._redis.pipeline()
        pipe.zadd(self._key("tabs", user_id), {tab: now + LEASE_SECONDS})
        pipe.expire(self._key("tabs", user_id), _KEY_TTL_SECONDS)
        pipe.set(self._key("workspace", user_id), workspace_id, ex=_KEY_TTL_SECONDS)
        pipe.sadd(f"{self._prefix}:users", user_id)
        if active:
            pipe.set(self._key("active", user_id), repr(now), ex=_KEY_TTL_SECONDS)
        pipe.execute()

    def leave(self, user_id: int, tab: str) -> None:
        self._redis.zrem(self._key("tabs", user_id), tab)

    def tabs(self, user_id: int, now: float) -> Tabs:
        pipe = self._redis.pipeline()
        pipe.zcount(self._key("tabs", user_id), f"({now}", "+inf")
        pipe.get(self._key("active", user_id))
        pipe.get(self._key("workspace", user_id))
        live, active, workspace = pipe.execute()
        return Tabs(
            int(live),
            float(active) if active is not None else None,
            int(workspace) if workspace is not None else None,
        )

    def user_ids(self) -> set[int]:
        return {int(member) for member in self._redis.smembers(f"{self._prefix}:users")}

    def forget_expired(self, user_id: int, now: float) -> None:
        key = self._key("tabs", user_id)
        self._redis.zremrangebyscore(key, "-inf", now)
        # A tab that renews between these two calls adds the person back on its next renewal.
        if self._redis.zcard(key) == 0:
            self._redis.srem(f"{self._prefix}:users", user_id)


def make_presence_store(url: str, prefix: str = "tertulia") -> PresenceStore:
    if url.startswith(("redis://", "rediss://")):
        return RedisPresenceStore(url, prefix)
    return MemoryPresenceStore()


def derive(choice: ActivityStatus, tabs: Tabs, now: float, away_after_seconds: float) -> ActivityStatus:
    """The status shown, from the person's choice and their tabs."""
    if tabs.live == 0:
        return ActivityStatus.OFFLINE
    if choice != ActivityStatus.ONLINE:
        return choice
    if tabs.last_active is None or now - tabs.last_active >= away_after_seconds:
        return ActivityStatus.AWAY
    return ActivityStatus.ONLINE


def away_after_seconds(session: Session, workspace_id: int | None) -> float:
    minutes = None
    if workspace_id is not None:
        minutes = session.scalar(select(Workspace.away_after_minutes).where(Workspace.id == workspace_id))
    return float((minutes or DEFAULT_AWAY_MINUTES) * 60)


def set_shown_status(session: Session, user: User, status: ActivityStatus, at: datetime | None = None) -> bool:
    """Show `status` for `user`, recording the period; False when it was already shown."""
    if user.activity_status == status:
        return False
    previous = ActivityStatus(user.activity_status)
    at = at or utcnow()
    session.execute(
        update(StatusPeriod)
        .where(StatusPeriod.user_id == user.id, StatusPeriod.ended_at.is_(None))
        .values(ended_at=at)
        .execution_options(synchronize_session=False)
    )
    session.add(StatusPeriod(user_id=user.id, status=status, started_at=at))
    user.activity_status = status
    session.flush()
    workspaces = list(
        session.scalars(select(Membership.workspace_id).where(Membership.user_id == user.id, Membership.active))
    )
    events = [
        {"type": PRESENCE_CHANGED, "workspace_id": ws, "user_id": user.id, "data": {"status": status.value}}
        for ws in workspaces
    ]
    # Durable too, in the same transaction: consumers that act on who is available (the workflows'
    # assignment queue) learn of it at once instead of polling the status periods.
    payload = UserStatusChanged(user_id=user.id, status=status.value, previous_status=previous.value)
    for ws in workspaces:
        emit(session, Event(EventType.USER_STATUS_CHANGED, ws, payload, actor=actor_label("user", user.id)))

    def publish() -> None:
        for event in events:
            realtime.publish(event)

    on_commit(session, publish)
    return True


def refresh(session: Session, store: PresenceStore, user_id: int, now: datetime | None = None) -> ActivityStatus | None:
    """Derive and show `user_id`'s status from their tabs now; the status, or None for no such user."""
    now = now or utcnow()
    user = session.scalars(select(User).where(User.id == user_id).with_for_update()).one_or_none()
    if user is None:
        return None
    tabs = store.tabs(user_id, now.timestamp())
    status = derive(user.status_choice, tabs, now.timestamp(), away_after_seconds(session, tabs.workspace_id))
    set_shown_status(session, user, status, now)
    return status


def sweep(db: Database, store: PresenceStore) -> int:
    """Re-derive everyone with a lease or shown other than offline; how many changed. Run by every
    web process: the changes are compare-and-set under the person's row lock, so two sweeps agree."""
    now = utcnow()
    with db.transaction(write=False) as session:
        shown = set(session.scalars(select(User.id).where(User.activity_status != ActivityStatus.OFFLINE)))
    changed = 0
    for user_id in sorted(store.user_ids() | shown):
        with db.transaction() as session:
            before = session.scalar(select(User.activity_status).where(User.id == user_id))
            after = refresh(session, store, user_id, now)
            changed += int(after is not None and after != before)
        store.forget_expired(user_id, now.timestamp())
    return changed


class Tab:
    """One open socket's part in its person's presence (used by the agents' socket)."""

    def __init__(self, db: Database, store: PresenceStore, user_id: int, workspace_id: int, tab: str) -> None:
        self.db = db
        self.store = store
        self.user_id = user_id
        self.workspace_id = workspace_id
        self.tab = tab
        self.shown: ActivityStatus | None = None
        self.refreshed_at = 0.0

    def _refresh(self) -> None:
        with self.db.transaction() as session:
            self.shown = refresh(session, self.store, self.user_id)
        self.refreshed_at = utcnow().timestamp()

    def arrive(self) -> None:
        self.store.touch(self.user_id, self.tab, self.workspace_id, active=True, now=utcnow().timestamp())
        self._refresh()

    def renew(self) -> None:
        self.store.touch(self.user_id, self.tab, self.workspace_id, active=False, now=utcnow().timestamp())

    def used(self) -> None:
        """The person used this tab: back to online if activity is what they were waiting for. What
        this tab knows of the status may be stale (a sweep elsewhere; its event is on the way), so it
        is read again at least every RECHECK_SECONDS of use."""
        now = utcnow().timestamp()
        self.store.touch(self.user_id, self.tab, self.workspace_id, active=True, now=now)
        if self.shown != ActivityStatus.ONLINE or now - self.refreshed_at >= RECHECK_SECONDS:
            self._refresh()

    def saw(self, status: str) -> None:
        """A `presence.changed` of this person reached the socket (the sweep, another tab)."""
        try:
            self.shown = ActivityStatus(status)
        except ValueError:
            return

    def leave(self) -> None:
        self.store.leave(self.user_id, self.tab)
        self._refresh()


def online_user_ids(session: Session, workspace_id: int) -> list[int]:
    """Active members of the workspace shown online now (assignment to "only online users")."""
    return list(
        session.scalars(
            select(User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(
                Membership.workspace_id == workspace_id,
                Membership.active,
                User.activity_status == ActivityStatus.ONLINE,
            )
            .order_by(User.id)
        )
    )


def statuses(session: Session, user_ids: Iterable[int]) -> dict[int, ActivityStatus]:
    ids = list(user_ids)
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.activity_status).where(User.id.in_(ids)))
    return {user_id: ActivityStatus(status) for user_id, status in rows}


def time_in_status(
    session: Session,
    user_id: int,
    start: datetime,
    end: datetime,
    status: ActivityStatus = ActivityStatus.ONLINE,
) -> timedelta:
    """How long `user_id` was shown `status` within [start, end) (an open period runs to now)."""
    now = utcnow()
    rows = session.scalars(
        select(StatusPeriod).where(
            StatusPeriod.user_id == user_id,
            StatusPeriod.status == status,
            StatusPeriod.started_at < end,
            (StatusPeriod.ended_at.is_(None)) | (StatusPeriod.ended_at > start),
        )
    )
    total = timedelta()
    for period in rows:
        began = max(period.started_at, start)
        finished = min(period.ended_at or now, end)
        if finished > began:
            total += finished - began
    return total
