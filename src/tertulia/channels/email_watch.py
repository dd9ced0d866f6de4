"""Who watches each email channel's mailbox, as the channel's page and the API show it, and what the
watcher processes know of each other to split the mailboxes.

Every process that runs the watchers (conversations/ingress/mailbox.py `MailWatchers`) has a row in
`email_watchers` (host, pid, kind, since when) whose heartbeat it writes every
`email_watch_heartbeat_seconds` (30 by default): one UPDATE per process per heartbeat, whatever the
number of mailboxes. A mailbox's row in `email_watches` names the process holding it, since when and
how it waits (IDLE, or a read every poll_seconds); it is written when a process takes or lets go of
the mailbox and when the watcher learns the server's mode, and the last look at the server, the last
new mail and the last error are written in the transaction that moves the mailbox's place anyway.

A process silent for `STALE_HEARTBEATS` heartbeats (two minutes by default) is shown as gone: its
mailboxes are "not watched". For splitting, the watchers count a process as alive for
`LIVE_HEARTBEATS` heartbeats only, so the mailboxes of one that died are taken over within about two
heartbeats (its locks went with it at once; see kit/process_locks.py). How many mailboxes each live
process holds, as recorded here, is what `mailboxes_to_hold` splits them by.
"""

import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.channels.health import MAX_ERROR
from tertulia.channels.models import EmailWatch, EmailWatcher
from tertulia.kit.clock import utcnow
from tertulia.kit.db import race_guard
from tertulia.kit.settings import get_settings

IDLE = "idle"
POLL = "poll"
STALE_HEARTBEATS = 4  # shown as not watched past this (2 minutes at 30 s)
LIVE_HEARTBEATS = 2  # counted when splitting the mailboxes
# A row whose process has been silent this long is deleted by the next heartbeat of any process.
FORGET_AFTER = timedelta(days=1)


def heartbeat_seconds() -> float:
    return get_settings().email_watch_heartbeat_seconds


def _silent_for(heartbeats: int) -> timedelta:
    return timedelta(seconds=heartbeats * heartbeat_seconds())


# ----- the watcher processes -------------------------------------------------------------------------


def register(session: Session, kind: str) -> int:
    """This process, as a watcher: its row's id."""
    now = utcnow()
    watcher = EmailWatcher(
        host=socket.gethostname()[:255], pid=os.getpid(), kind=kind, started_at=now, heartbeat_at=now
    )
    session.add(watcher)
    session.flush()
    return watcher.id


def beat(session: Session, watcher_id: int, kind: str) -> int:
    """This process is alive; its row's id (a new row if another process forgot it meanwhile, after a
    very long silence). Rows of processes silent for a day are deleted."""
    now = utcnow()
    found = session.execute(update(EmailWatcher).where(EmailWatcher.id == watcher_id).values(heartbeat_at=now))
    if not getattr(found, "rowcount", 0):
        watcher_id = register(session, kind)
    session.execute(delete(EmailWatcher).where(EmailWatcher.heartbeat_at < now - FORGET_AFTER))
    return watcher_id


def unregister(session: Session, watcher_id: int) -> None:
    """This process stops watching: its mailboxes are no longer named as its own."""
    session.execute(
        update(EmailWatch).where(EmailWatch.watcher_id == watcher_id).values(**_NOBODY),
        execution_options={"synchronize_session": False},
    )
    session.execute(delete(EmailWatcher).where(EmailWatcher.id == watcher_id))


def live_loads(session: Session, watcher_id: int | None, channel_ids: Collection[int]) -> dict[int, int]:
    """The processes running watchers now, this one (`watcher_id`) included whatever its heartbeat,
    each with how many of `channel_ids` (the mailboxes to watch) it is recorded as holding."""
    since = utcnow() - _silent_for(LIVE_HEARTBEATS)
    live = session.scalars(
        select(EmailWatcher.id).where((EmailWatcher.heartbeat_at >= since) | (EmailWatcher.id == (watcher_id or 0)))
    ).all()
    loads = dict.fromkeys(live, 0)
    if watcher_id is not None:
        loads.setdefault(watcher_id, 0)
    if loads and channel_ids:
        held = session.execute(
            select(EmailWatch.watcher_id, func.count())
            .where(EmailWatch.watcher_id.in_(list(loads)), EmailWatch.channel_id.in_(list(channel_ids)))
            .group_by(EmailWatch.watcher_id)
        )
        loads.update({holder: int(count) for holder, count in held if holder is not None})
    return loads


def mailboxes_to_hold(mailboxes: int, held: int, others: Sequence[int], free: int) -> int:
    """How many of the `mailboxes` a process should hold, holding `held` while the other live
    processes hold `others` and `free` are held by none (or are being handed over).

    The split converges to the most even one (every process within one mailbox of every other) and
    then nothing moves: a process gives mailboxes back only when it holds at least two more than
    the least loaded other process and more than the even share rounded down, and no mailbox is
    free (one free is on its way to someone: giving more then would overshoot, and what is given
    would be taken back). It gives down to the even share rounded up, or to the share rounded down
    when it holds exactly the rounded-up share (3 and 0 become 2 and 1; 2, 2 and 0 become 1, 1 and
    2). It takes free mailboxes up to the share rounded up, but beyond the share rounded down only
    while every other process holds at least that (the free ones go to those below it first)."""
    if not others:
        return mailboxes
    processes = len(others) + 1
    floor, ceil = mailboxes // processes, -(-mailboxes // processes)
    least = min(others)
    if free == 0 and held >= least + 2 and held > floor:
        return ceil if held > ceil else floor
    return max(held, min(ceil, max(floor, least + 1)))


# ----- one mailbox ---------------------------------------------------------------------------------------

_NOBODY: dict[str, Any] = {"watcher_id": None, "watched_since": None, "mode": None}


def _watch_row(session: Session, channel_id: int) -> EmailWatch:
    row = session.get(EmailWatch, channel_id)
    if row is not None:
        return row
    try:
        with race_guard(session):
            row = EmailWatch(channel_id=channel_id)
            session.add(row)
    except IntegrityError:
        # Another process added it first (PostgreSQL; SQLite writes one transaction at a time).
        row = session.get(EmailWatch, channel_id, populate_existing=True)
        if row is None:
            raise
    return row


def take(session: Session, channel_id: int, watcher_id: int) -> None:
    row = _watch_row(session, channel_id)
    row.watcher_id = watcher_id
    row.watched_since = utcnow()
    row.mode = None


def let_go(session: Session, channel_id: int, watcher_id: int) -> None:
    """Unless another process has taken the mailbox since."""
    session.execute(
        update(EmailWatch)
        .where(EmailWatch.channel_id == channel_id, EmailWatch.watcher_id == watcher_id)
        .values(**_NOBODY),
        execution_options={"synchronize_session": False},
    )


def set_mode(session: Session, channel_id: int, watcher_id: int, mode: str) -> None:
    session.execute(
        update(EmailWatch)
        .where(EmailWatch.channel_id == channel_id, EmailWatch.watcher_id == watcher_id)
        .values(mode=mode),
        execution_options={"synchronize_session": False},
    )


def note_look(session: Session, channel_id: int, *, found_mail: bool, error: str | None) -> None:
    """A look at the server (by a watcher or by the minute sweep): when, and whether it found mail or
    failed."""
    now = utcnow()
    row = _watch_row(session, channel_id)
    row.checked_at = now
    if found_mail:
        row.mail_at = now
    if error is not None:
        row.error = error[:MAX_ERROR]
        row.error_at = now


def note_error(session: Session, channel_id: int, error: str) -> None:
    """A watcher's connection failed (a dropped IDLE connection included, which is not the channel's
    failure: it is opened again)."""
    row = _watch_row(session, channel_id)
    row.error = error[:MAX_ERROR]
    row.error_at = utcnow()


# ----- what the page and the API show ------------------------------------------------------------------


@dataclass(frozen=True)
class WatchState:
    watched: bool
    kind: str | None
    host: str | None
    pid: int | None
    since: datetime | None
    mode: str | None
    heartbeat_at: datetime | None
    checked_at: datetime | None
    mail_at: datetime | None
    error: str | None
    error_at: datetime | None


def watch_of(session: Session, channel_id: int) -> WatchState:
    """Watched only while the holding process's heartbeat is fresh (a process that died without
    letting go shows as not watched once it is stale)."""
    found = session.execute(
        select(EmailWatch, EmailWatcher)
        .outerjoin(EmailWatcher, EmailWatcher.id == EmailWatch.watcher_id)
        .where(EmailWatch.channel_id == channel_id)
    ).one_or_none()
    row, process = found if found is not None else (None, None)
    fresh = process is not None and process.heartbeat_at >= utcnow() - _silent_for(STALE_HEARTBEATS)
    return WatchState(
        watched=fresh,
        kind=process.kind if fresh and process else None,
        host=process.host if fresh and process else None,
        pid=process.pid if fresh and process else None,
        since=row.watched_since if fresh and row else None,
        mode=row.mode if fresh and row else None,
        heartbeat_at=process.heartbeat_at if fresh and process else None,
        checked_at=row.checked_at if row else None,
        mail_at=row.mail_at if row else None,
        error=row.error if row else None,
        error_at=row.error_at if row else None,
    )
