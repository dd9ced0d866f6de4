"""Email channels' mail in: read new mail from the mailbox and hand it to the callback spool.

The fetcher reads what arrived since its last look (IMAP: UIDs above the last one spooled, under the
folder's UIDVALIDITY; POP3: UIDLs not spooled yet, mail left on the server) and stores each raw
message in the callback spool (ingress/callbacks.py) exactly as if the mail server had posted it:
the queued task then parses it with the email adapter and writes it through `do_receive_many` with
everything else, files, threading and statuses included. Only once the spool has the mail is the
mailbox's place (`Mailbox`) moved past it, so a fetcher that dies in between reads the same mail
again next time, and the Message-ID (or the hash of a message without one) keeps it from being
stored twice: a restart neither loses nor duplicates mail.

When to look: `fetch_due_mailboxes` (every minute) reads each active email channel whose
`poll_seconds` have passed; `watch_mailbox` keeps an IMAP connection in IDLE (RFC 2177) when the
server offers it and reads as soon as the server says new mail exists (`tertulia channel
watch-email`, or the consumer's watcher threads).
"""

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from huey import crontab
from sqlalchemy import select

from tertulia.channels.adapters import email as email_adapter
from tertulia.channels.health import record_failure
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelError, TransientError
from tertulia.conversations.ingress.callbacks import callback_spool, enqueue_callbacks
from tertulia.conversations.models import Mailbox
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.queue import huey, task_database

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
    return sum(fetch_mailbox(db, channel_id).spooled for channel_id in due_channels(db))


@huey.periodic_task(crontab(minute="*"), name="conversations.fetch_mailboxes")  # type: ignore[untyped-decorator]
def fetch_mailboxes() -> int:
    return fetch_due_mailboxes(task_database())


# ----- IDLE ------------------------------------------------------------------------------------------


def watch_mailbox(db: Database, channel_id: int, stop: threading.Event, *, idle_seconds: float = 25 * 60) -> None:
    """Reads the channel's mail whenever the IMAP server says some arrived (IDLE), until `stop` is
    set; a server without IDLE is read every `poll_seconds`. Connection trouble waits and retries."""
    backoff = 1.0
    while not stop.is_set():
        channel = _channel(db, channel_id)
        if channel is None:
            return
        config = email_adapter.config_of(channel)
        fetch_mailbox(db, channel_id)
        if config.protocol != "imap":
            stop.wait(config.poll_seconds)  # POP3 has no push: read every poll_seconds
            continue
        try:
            with email_adapter.imap_session(channel) as client:
                if "IDLE" not in client.capabilities:
                    stop.wait(config.poll_seconds)
                    continue
                email_adapter.select_folder(client, config.folder)
                backoff = 1.0
                while not stop.is_set():
                    # A short IDLE when asked to stop soon; the server is told DONE before it times us out.
                    if email_adapter.wait_idle(client, min(idle_seconds, 5.0)):
                        fetch_mailbox(db, channel_id)
        except (ChannelError, OSError) as exc:
            log.info("email_watch_interrupted", channel_id=channel_id, reason=str(exc))
            stop.wait(backoff)
            backoff = min(backoff * 2, 60.0)


def start_watchers(db: Database, stop: threading.Event) -> list[threading.Thread]:
    """One watcher thread per active email channel: IDLE over IMAP, else reading every poll_seconds
    (daemon threads; `stop` ends them)."""
    with db.transaction(write=False) as session:
        ids = list(
            session.scalars(select(Channel.id).where(Channel.type == email_adapter.TYPE, Channel.active.is_(True)))
        )
    threads = [
        threading.Thread(target=watch_mailbox, args=(db, channel_id, stop), daemon=True, name=f"mail-{channel_id}")
        for channel_id in ids
    ]
    for thread in threads:
        thread.start()
    return threads
