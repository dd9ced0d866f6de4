"""Email channels' mail in: read new mail from the mailbox and hand it to the callback spool.

The fetcher reads what arrived since its last look (IMAP: UIDs above the last one spooled, under the
folder's UIDVALIDITY; POP3: UIDLs not spooled yet, mail left on the server) and stores each raw
message in the callback spool (ingress/callbacks.py) exactly as if the mail server had posted it:
the queued task then parses it with the email adapter and writes it through `do_receive_many` with
everything else, files, threading and statuses included. Only once the spool has the mail is the
mailbox's place (`Mailbox`) moved past it, so a fetcher that dies in between reads the same mail
again next time, and the Message-ID (or the hash of a message without one) keeps it from being
stored twice: a restart neither loses nor duplicates mail.

When to look: every process that consumes the queue (`tertulia worker`, `tertulia serve` with its
embedded queue) runs `MailWatchers`: one thread per active email channel whose lock it holds
(kit/process_locks.py, so one watcher per mailbox across processes), which keeps an IMAP
connection in IDLE (RFC 2177, re-issued every 25 minutes) when the server offers it and reads as
soon as the server says new mail exists, or reads every `poll_seconds` (POP3, IMAP without IDLE).
`tertulia channel watch-email` runs the same watchers alone. The processes split the mailboxes
between them by their heartbeats, and record who watches each mailbox and how
(channels/email_watch.py, shown on the channel's page and in the API). `fetch_due_mailboxes` (every
minute) reads the mailboxes whose `poll_seconds` have passed and that no watcher holds.
"""

import hashlib
import imaplib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from huey import crontab
from sqlalchemy import select

from tertulia.channels import email_watch
from tertulia.channels.adapters import email as email_adapter
from tertulia.channels.health import record_failure
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelError, TransientError
from tertulia.conversations.ingress.callbacks import callback_spool, enqueue_callbacks
from tertulia.conversations.models import Mailbox
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.process_locks import ProcessLocks, held_by_anyone
from tertulia.kit.queue import consumer_kind, huey, task_database
from tertulia.kit.settings import get_settings

log = structlog.get_logger()

FETCH_BATCH = 200  # messages spooled per look; a fuller mailbox is read in several
MAX_BATCHES = 50  # per call of fetch_mailbox: a huge backlog goes on at the next look
_fetching: dict[int, threading.Lock] = {}
_fetching_lock = threading.Lock()


@dataclass(frozen=True)
class FetchReport:
    spooled: int
    error: str | None = None


def _lock_for(channel_id: int) -> threading.Lock:
    with _fetching_lock:
        return _fetching.setdefault(channel_id, threading.Lock())


def _row(channel: Channel, raw: bytes, mailbox: str) -> dict[str, Any]:
    return {
        "workspace_id": channel.workspace_id,
        "channel_id": channel.id,
        "method": "POST",
        "url": f"imap:{channel.id}",
        "headers": {email_adapter.MAILBOX_HEADER: mailbox},
        "query": {},
        "body": raw,
        "received_at": utcnow(),
        "attempts": 0,
        "lease_until": None,
    }


def _state(db: Database, channel: Channel) -> tuple[int | None, int, set[str]]:
    with db.transaction() as session:
        state = session.get(Mailbox, channel.id)
        if state is None:
            state = Mailbox(
                channel_id=channel.id,
                workspace_id=channel.workspace_id,
                folder=email_adapter.config_of(channel).folder,
                uidvalidity=None,
                last_uid=0,
                pop_uidls=[],
            )
            session.add(state)
            session.flush()
        return state.uidvalidity, int(state.last_uid), set(state.pop_uidls or [])


def _advance(
    db: Database,
    channel: Channel,
    *,
    uidvalidity: int | None = None,
    last_uid: int | None = None,
    pop_uidls: list[str] | None = None,
    spooled: int = 0,
    failure: ChannelError | None = None,
) -> None:
    now = utcnow()
    config = email_adapter.config_of(channel)
    with db.transaction() as session:
        state = session.get(Mailbox, channel.id, with_for_update=True)
        if state is None:
            return
        if uidvalidity is not None:
            state.uidvalidity = uidvalidity
        if last_uid is not None:
            state.last_uid = last_uid
        if pop_uidls is not None:
            state.pop_uidls = pop_uidls
        state.folder = config.folder
        state.fetched_at = now
        state.due_at = now + timedelta(seconds=config.poll_seconds)
        if spooled:
            state.received_at = now
        state.error = failure.reason if failure is not None else None
        email_watch.note_look(session, channel.id, found_mail=spooled > 0, error=state.error)
        if failure is not None:
            # The mailbox page shows every failure; the channel is in error only when it is the
            # channel's own (a refused login, a folder gone, a server that cannot be reached).
            record_failure(session, channel.id, failure, now)


def _channel(db: Database, channel_id: int) -> Channel | None:
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        if channel is None or channel.type != email_adapter.TYPE or not channel.active:
            return None
        session.expunge(channel)
        return channel


def fetch_mailbox(db: Database, channel_id: int, *, batch: int = FETCH_BATCH, enqueue: bool = True) -> FetchReport:
    """Reads the channel's new mail into the callback spool; how many messages were spooled."""
    channel = _channel(db, channel_id)
    if channel is None:
        return FetchReport(0)
    with _lock_for(channel_id):
        try:
            if email_adapter.config_of(channel).protocol == "pop3":
                spooled = _fetch_pop3(db, channel, batch, enqueue=enqueue)
            else:
                spooled = _fetch_imap(db, channel, batch, enqueue=enqueue)
        except ChannelError as exc:
            log.warning("email_fetch_failed", channel_id=channel_id, reason=exc.reason)
            _advance(db, channel, failure=exc)
            return FetchReport(0, error=exc.reason)
        except OSError as exc:
            reason = f"the mail server could not be reached: {exc}"
            log.warning("email_fetch_failed", channel_id=channel_id, reason=reason)
            _advance(db, channel, failure=TransientError(reason))
            return FetchReport(0, error=reason)
    return FetchReport(spooled)


def _spool(db: Database, rows: list[dict[str, Any]], *, enqueue: bool) -> None:
    ids = callback_spool(db).add(rows)
    if enqueue and ids:
        enqueue_callbacks(ids)


def _fetch_imap(db: Database, channel: Channel, batch: int, *, enqueue: bool) -> int:
    config = email_adapter.config_of(channel)
    uidvalidity, last_uid, _ = _state(db, channel)
    total = 0
    with email_adapter.imap_session(channel) as client:
        for _ in range(MAX_BATCHES):
            found = email_adapter.fetch_new(client, config.folder, last_uid, uidvalidity, batch)
            if found.uidvalidity != uidvalidity:
                if uidvalidity is not None:
                    log.info("email_uidvalidity_changed", channel_id=channel.id, old=uidvalidity, new=found.uidvalidity)
                last_uid = 0
            rows = [
                _row(channel, mail.raw, f"{config.folder}:{found.uidvalidity}:{mail.uid}") for mail in found.messages
            ]
            _spool(db, rows, enqueue=enqueue)
            uidvalidity = found.uidvalidity
            last_uid = max([last_uid, *(mail.uid for mail in found.messages)])
            _advance(db, channel, uidvalidity=uidvalidity, last_uid=last_uid, spooled=len(rows))
            total += len(rows)
            if not found.more:
                break
    return total


def _fetch_pop3(db: Database, channel: Channel, batch: int, *, enqueue: bool) -> int:
    _, _, seen = _state(db, channel)
    total = 0
    with email_adapter.pop3_session(channel) as pop:
        on_server = email_adapter.server_uidls(pop)
        for _ in range(MAX_BATCHES):
            found, more = email_adapter.pop3_fetch(pop, seen, batch)
            rows = [_row(channel, raw, f"pop3:{uidl}") for uidl, raw in found]
            _spool(db, rows, enqueue=enqueue)
            seen.update(uidl for uidl, _ in found)
            # Only UIDLs still on the server are worth remembering.
            _advance(db, channel, pop_uidls=sorted(seen & on_server), spooled=len(rows))
            total += len(rows)
            if not more:
                break
    return total


def due_channels(db: Database) -> list[int]:
    """Active email channels whose next look is due (or that were never read)."""
    now = utcnow()
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(Channel.id, Mailbox.due_at)
            .outerjoin(Mailbox, Mailbox.channel_id == Channel.id)
            .where(Channel.type == email_adapter.TYPE, Channel.active.is_(True))
        )
        return [int(channel_id) for channel_id, due in rows if due is None or due <= now]


def fetch_due_mailboxes(db: Database) -> int:
    """Reads the due mailboxes that no watcher holds (a watcher reads its own, by IDLE or every
    poll_seconds)."""
    due = due_channels(db)
    watched = watched_channels(db, due)
    return sum(fetch_mailbox(db, channel_id).spooled for channel_id in due if channel_id not in watched)


@huey.periodic_task(crontab(minute="*"), name="conversations.fetch_mailboxes")  # type: ignore[untyped-decorator]
def fetch_mailboxes() -> int:
    return fetch_due_mailboxes(task_database())


# ----- watchers --------------------------------------------------------------------------------------

WATCH_NAMESPACE = "email-watchers"
SCAN_SECONDS = 2.0  # how soon a connected, changed or disconnected channel is noticed
MAX_BACKOFF = 60.0


def _ignore_mode(mode: str) -> None:
    pass


def _wait_for_mail(
    db: Database,
    channel: Channel,
    stop: threading.Event,
    idle_seconds: float,
    backoff: list[float],
    on_mode: Callable[[str], None],
) -> bool:
    """One IDLE connection's life: select the folder, read what is there, then IDLE (re-issued every
    `idle_seconds`) and read each time the server says mail arrived. False when the server has no
    IDLE (the caller polls instead)."""
    config = email_adapter.config_of(channel)
    with email_adapter.idle_session(channel) as client:
        backoff[0] = 1.0
        if "IDLE" not in client.capabilities:
            return False
        on_mode(email_watch.IDLE)
        email_adapter.select_folder(client, config.folder)
        # Read after the SELECT: mail that arrives from here on is announced by the IDLE below.
        fetch_mailbox(db, channel.id)
        while not stop.is_set():
            if email_adapter.wait_idle(client, idle_seconds, stop.is_set):
                fetch_mailbox(db, channel.id)
    return True


def watch_mailbox(
    db: Database,
    channel_id: int,
    stop: threading.Event,
    *,
    idle_seconds: float = email_adapter.IDLE_SECONDS,
    on_mode: Callable[[str], None] = _ignore_mode,
) -> None:
    """Reads the channel's mail whenever the IMAP server says some arrived (IDLE, re-issued every
    `idle_seconds`), until `stop` is set or the channel is gone or disconnected; a server without
    IDLE, or POP3, is read every `poll_seconds`. A dropped connection is opened again after a wait
    that doubles (1 s up to a minute) while it keeps failing. `on_mode` is told which of the two
    (email_watch.IDLE or POLL) each connection uses."""
    backoff = [1.0]
    while not stop.is_set():
        channel = _channel(db, channel_id)
        if channel is None:
            return
        config = email_adapter.config_of(channel)
        if config.protocol != "imap":
            on_mode(email_watch.POLL)
            fetch_mailbox(db, channel_id)
            stop.wait(config.poll_seconds)  # POP3 has no push
            continue
        try:
            if not _wait_for_mail(db, channel, stop, idle_seconds, backoff, on_mode):
                on_mode(email_watch.POLL)
                fetch_mailbox(db, channel_id)
                stop.wait(config.poll_seconds)
        except (ChannelError, OSError, imaplib.IMAP4.error) as exc:
            reason = exc.reason if isinstance(exc, ChannelError) else f"the IMAP server could not be reached: {exc}"
            log.info("email_watch_interrupted", channel_id=channel_id, reason=reason, retry_in=backoff[0])
            with db.transaction() as session:
                email_watch.note_error(session, channel_id, reason)
            if backoff[0] > 1.0:
                # Failing again after a wait: the channel's page shows it (a single dropped connection,
                # which servers and routers do to idle ones, is not the mailbox failing).
                _state(db, channel)  # the mailbox's row, if never read yet
                _advance(db, channel, failure=exc if isinstance(exc, ChannelError) else TransientError(reason))
            stop.wait(backoff[0])
            backoff[0] = min(backoff[0] * 2, MAX_BACKOFF)


@dataclass
class _Watcher:
    fingerprint: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread = field(init=False)
    # The mode last recorded for the mailbox (written when it changes only).
    mode: str | None = None


def _fingerprint(channel: Channel) -> str:
    """What a running watcher was started with: a change of the settings or of the password starts
    it again (not OAuth tokens, which are refreshed on their own)."""
    password = str((channel.secrets or {}).get("password") or "")
    secret = hashlib.sha256(password.encode()).hexdigest()
    return json.dumps([channel.config or {}, secret], sort_keys=True, default=str)


class MailWatchers:
    """This process's watchers: one thread per active email channel whose lock it holds (see
    kit/process_locks.py: a PostgreSQL advisory lock, or a file lock beside an SQLite database), so
    however many processes run watchers, each mailbox has one. Every `scan_seconds` it looks at the
    channels: it starts watchers for channels connected since (whose lock it gets), stops those of
    channels disconnected or deleted, starts a watcher again when its settings changed, and takes
    over the mailboxes of a process that died (its locks went with it).

    The processes split the mailboxes (channels/email_watch.py): each writes a heartbeat every
    `email_watch_heartbeat_seconds`, and holds as many as `email_watch.mailboxes_to_hold` says from
    what every live process is recorded holding: it takes free ones up to that, and one holding at
    least two more than the least loaded (the first to start took them all) stops the watchers of
    its newest ones, closing their IDLE connections, and lets their locks go for the others to take.
    The split ends at most one apart and then stays. A process that died stops counting after two
    heartbeats, and the others take its mailboxes."""

    def __init__(
        self,
        db: Database,
        *,
        kind: str = "watch-email",
        scan_seconds: float = SCAN_SECONDS,
        idle_seconds: float = email_adapter.IDLE_SECONDS,
    ) -> None:
        self.db = db
        self.kind = kind
        self.scan_seconds = scan_seconds
        self.idle_seconds = idle_seconds
        self.watcher_id: int | None = None
        self._next_beat = 0.0
        self._next_probe = 0.0
        # Mailboxes found free at each probe since (monotonic), and those taken that way.
        self._free_since: dict[int, float] = {}
        self._rescued: set[int] = set()
        self._locks = ProcessLocks(db.url, WATCH_NAMESPACE)
        self._watchers: dict[int, _Watcher] = {}
        self._watchers_lock = threading.Lock()  # `watching` is read from other threads
        self._stopping: dict[int, threading.Thread] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def watching(self) -> set[int]:
        """The channels this process watches now."""
        with self._watchers_lock:
            return set(self._watchers)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="mail-watchers")
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.scan()
                except Exception:  # a database hiccup must not end this process's watchers
                    log.exception("email_watchers_scan_failed")
                self._stop.wait(self.scan_seconds)
        finally:
            for channel_id in list(self._watchers):
                self._retire(channel_id)
            for thread in self._stopping.values():
                thread.join(10)
            self._stopping.clear()
            try:
                if self.watcher_id is not None:
                    with self.db.transaction() as session:
                        email_watch.unregister(session, self.watcher_id)
            except Exception:  # its row goes stale instead; the locks are let go below all the same
                log.exception("email_watchers_unregister_failed")
            self._locks.close()

    def _retire(self, channel_id: int) -> None:
        self._rescued.discard(channel_id)
        with self._watchers_lock:
            watcher = self._watchers.pop(channel_id)
        watcher.stop.set()
        self._stopping[channel_id] = watcher.thread

    def _beat(self) -> None:
        """This process's row at the first scan, then its heartbeat when due."""
        if self.watcher_id is not None and time.monotonic() < self._next_beat:
            return
        with self.db.transaction() as session:
            if self.watcher_id is None:
                self.watcher_id = email_watch.register(session, self.kind)
            else:
                self.watcher_id = email_watch.beat(session, self.watcher_id, self.kind)
        self._next_beat = time.monotonic() + email_watch.heartbeat_seconds()

    def scan(self) -> None:
        if not self._locks.alive():
            # The locks went with the database connection: another process may hold them now.
            for channel_id in list(self._watchers):
                self._retire(channel_id)
        self._beat()
        with self.db.transaction(write=False) as session:
            channels = list(
                session.scalars(select(Channel).where(Channel.type == email_adapter.TYPE, Channel.active.is_(True)))
            )
            wanted = {channel.id: _fingerprint(channel) for channel in channels}
            loads = email_watch.live_loads(session, self.watcher_id, list(wanted))
        for channel_id, watcher in list(self._watchers.items()):
            if wanted.get(channel_id) != watcher.fingerprint or not watcher.thread.is_alive():
                self._retire(channel_id)
        others = [held for watcher_id, held in loads.items() if watcher_id != self.watcher_id]
        # Recorded as nobody's, or still as this process's while their watchers stop: on their way.
        free = len(wanted) - sum(loads.values()) + sum(1 for i in self._stopping if i in wanted)
        counted = [i for i in self._watchers if i not in self._rescued]
        share = email_watch.mailboxes_to_hold(len(wanted), len(counted), others, free)
        for channel_id in sorted(self._rescued):
            if len(counted) < share:  # within the share now (the process that could not take it is gone)
                self._rescued.discard(channel_id)
                counted.append(channel_id)
        if len(counted) > share:
            # The newest go (a dict keeps the order the watchers were started in).
            extra = counted[share:]
            log.info("email_watch_balancing", giving_back=extra, share=share, others=others)
            for channel_id in extra:
                self._retire(channel_id)
        # A watcher's lock is let go only once its thread has ended, never while it may still read.
        for channel_id, thread in list(self._stopping.items()):
            if not thread.is_alive():
                del self._stopping[channel_id]
                if channel_id not in self._watchers:
                    self._let_go(channel_id)
        room = share - len(counted)
        candidates = [i for i in wanted if i not in self._watchers and i not in self._stopping]
        if room <= 0:
            self._probe(candidates, wanted)
            return
        taken = sorted(self._locks.claim(candidates))
        for channel_id in taken[room:]:  # more were free than this process's share
            self._locks.release(channel_id)
        for channel_id in taken[:room]:
            self._start(channel_id, wanted[channel_id])

    def _probe(self, candidates: list[int], wanted: dict[int, str]) -> None:
        """Once a heartbeat, a process at its share looks for mailboxes nobody holds: one found free
        at every look for two heartbeats (a live process that cannot take it, its locks' connection
        failing) is taken beyond the share, and kept (it does not count against the share, so it is
        not given back to be left unwatched again)."""
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + email_watch.heartbeat_seconds()
        free = self._locks.claim(candidates)
        self._free_since = {i: self._free_since.get(i, now) for i in free}
        unwatched_for = email_watch.LIVE_HEARTBEATS * email_watch.heartbeat_seconds()
        for channel_id in sorted(free):
            if now - self._free_since[channel_id] < unwatched_for:
                self._locks.release(channel_id)  # likely being handed over: the next look says
                continue
            log.info("email_watch_unwatched_taken", channel_id=channel_id)
            del self._free_since[channel_id]
            if self._start(channel_id, wanted[channel_id]):
                self._rescued.add(channel_id)

    def _start(self, channel_id: int, fingerprint: str) -> bool:
        try:
            self._begin(channel_id, fingerprint)
            return True
        except Exception:  # its lock is let go, to be claimed again at a later look
            log.exception("email_watch_start_failed", channel_id=channel_id)
            self._locks.release(channel_id)
            return False

    def _let_go(self, channel_id: int) -> None:
        try:
            if self.watcher_id is not None:
                with self.db.transaction() as session:
                    email_watch.let_go(session, channel_id, self.watcher_id)
        finally:
            self._locks.release(channel_id)

    def _begin(self, channel_id: int, fingerprint: str) -> None:
        watcher = _Watcher(fingerprint)
        watcher.thread = threading.Thread(
            target=self._watch, args=(channel_id, watcher), daemon=True, name=f"mail-{channel_id}"
        )
        if self.watcher_id is not None:
            with self.db.transaction() as session:
                email_watch.take(session, channel_id, self.watcher_id)
        with self._watchers_lock:
            self._watchers[channel_id] = watcher
        log.info("email_watch_started", channel_id=channel_id)
        watcher.thread.start()

    def _record_mode(self, channel_id: int, watcher: _Watcher, mode: str) -> None:
        if watcher.mode == mode or self.watcher_id is None:
            return
        try:
            with self.db.transaction() as session:
                email_watch.set_mode(session, channel_id, self.watcher_id, mode)
        except Exception:  # what the page shows must not end the watcher; written at the next connection
            log.exception("email_watch_mode_not_recorded", channel_id=channel_id)
            return
        watcher.mode = mode

    def _watch(self, channel_id: int, watcher: _Watcher) -> None:
        try:
            watch_mailbox(
                self.db,
                channel_id,
                watcher.stop,
                idle_seconds=self.idle_seconds,
                on_mode=lambda mode: self._record_mode(channel_id, watcher, mode),
            )
        except Exception:  # the next scan starts it again
            log.exception("email_watch_failed", channel_id=channel_id)
        finally:
            log.info("email_watch_stopped", channel_id=channel_id)


def watched_channels(db: Database, channel_ids: list[int]) -> set[int]:
    """Which of the channels a watcher (of any process) holds now."""
    return held_by_anyone(db.url, WATCH_NAMESPACE, channel_ids)


_process_watchers: MailWatchers | None = None
_process_lock = threading.Lock()


def start_process_watchers() -> None:
    """The watchers of a process that consumes the queue (`tertulia worker`, or `tertulia serve`
    with its embedded queue); `TERTULIA_EMAIL_WATCHERS=false` leaves them out."""
    global _process_watchers
    if not get_settings().email_watchers:
        return
    with _process_lock:
        if _process_watchers is None:
            _process_watchers = MailWatchers(task_database(), kind=consumer_kind())
            _process_watchers.start()


def stop_process_watchers() -> None:
    global _process_watchers
    with _process_lock:
        watchers, _process_watchers = _process_watchers, None
    if watchers is not None:
        watchers.stop()
