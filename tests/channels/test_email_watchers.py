"""The email channels' watchers that every queue consumer runs (conversations/ingress/mailbox.py
`MailWatchers`), against the real Dovecot of tests/mailservers.py: mail appears within seconds of its
delivery, channels connected, changed or disconnected while they run are picked up, one watcher holds
a mailbox however many run (a PostgreSQL advisory lock, or a file lock beside the SQLite database),
the survivor takes over from a killed holder, and nothing is lost or doubled."""

import imaplib
import os
import select as io_select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from tertulia.channels import email_watch
from tertulia.channels.adapters import email as email_adapter
from tertulia.channels.health import PROVIDER_OUTAGE_AFTER
from tertulia.channels.models import Channel, EmailWatch, EmailWatcher
from tertulia.channels.service import do_disconnect_channel, do_update_channel_config
from tertulia.conversations.ingress import mailbox as fetcher
from tertulia.conversations.ingress.callbacks import callback_spool, process_callbacks
from tertulia.conversations.models import Mailbox
from tertulia.kit import queue
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.kit.process_locks import ProcessLocks
from tertulia.kit.settings import get_settings
from tests.channels.email_support import SUPPORT, MailServers, customer_mail, email_channel, messages_of
from tests.conftest import Tenant
from tests.live_server import free_port
from tests.web.helpers import sign_in_as
from tests.webhooks.tls import TestAuthority

SCAN = 0.2  # the tests' watchers look at the channels five times a second
HEARTBEAT = 1.0  # and say they are alive every second (a process silent for two is taken as gone)


@pytest.fixture(autouse=True)
def _short_heartbeats(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Through the environment, so a `tertulia channel watch-email` started by a test has it too."""
    monkeypatch.setenv("TERTULIA_EMAIL_WATCH_HEARTBEAT_SECONDS", str(HEARTBEAT))
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _until(condition: Callable[[], object], timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _texts(db: Database, channel_id: int) -> list[str]:
    return [m.text or "" for m in messages_of(db, channel_id)]


@contextmanager
def _watchers(db: Database, **options: Any) -> Iterator[fetcher.MailWatchers]:
    watchers = fetcher.MailWatchers(db, scan_seconds=SCAN, **options)
    watchers.start()
    try:
        yield watchers
    finally:
        watchers.stop()


def _write_spooled(db: Database) -> None:
    """What the queued callback task does with the spool (for mail a killed process spooled)."""
    while callback_spool(db).waiting():
        if not process_callbacks(db):
            break


def test_the_workers_watchers_read_new_mail_of_a_channel_connected_while_they_run(
    client: TestClient, db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """Through a real queue consumer (as `tertulia worker` and `tertulia serve` run it): its watchers
    start with it, notice the channel connected after them, and the mail goes through the queue."""
    queue.huey.immediate = False
    queue.huey.flush()
    consumer = queue.start_consumer(1)
    try:
        channel = email_channel(db, tenant, mail, poll_seconds=3600)
        _until(lambda: fetcher.watched_channels(db, [channel.id]), what="the channel's watcher")
        # The consumer `tertulia serve` embeds (the record follows the lock).
        _until(lambda: _watch(db, channel.id).kind == "serve", timeout=5, what="the watcher's record")
        time.sleep(0.5)  # its IDLE has begun
        started = time.monotonic()
        mail.send(customer_mail(subject="push", body="llegó por IDLE"))
        _until(lambda: messages_of(db, channel.id), timeout=10, what="the message")
        took = time.monotonic() - started
    finally:
        consumer.stop(graceful=True)
        queue.huey.flush()
    assert _texts(db, channel.id) == ["llegó por IDLE"]
    assert took < 5, took
    # The consumer's watchers stopped with it and let go of the mailbox.
    assert fetcher.watched_channels(db, [channel.id]) == set()


def test_two_watchers_for_one_mailbox_one_holds_it_and_the_other_takes_over(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    first = fetcher.MailWatchers(db, scan_seconds=SCAN)
    second = fetcher.MailWatchers(db, scan_seconds=SCAN)
    first.start()
    second.start()
    try:
        _until(lambda: first.watching | second.watching, what="a watcher")
        time.sleep(10 * SCAN)  # both have looked several times
        assert len(first.watching) + len(second.watching) == 1
        holder, other = (first, second) if first.watching else (second, first)
        for n in range(3):
            mail.send(customer_mail(subject=f"uno {n}", body=f"primero {n}"))
        _until(lambda: len(messages_of(db, channel.id)) == 3, what="three messages")
        holder.stop()
        _until(lambda: other.watching == {channel.id}, what="the other watcher")
        mail.send(customer_mail(subject="dos", body="después del relevo"))
        _until(lambda: len(messages_of(db, channel.id)) == 4, what="the fourth message")
        time.sleep(1)
    finally:
        first.stop()
        second.stop()
    assert _texts(db, channel.id) == ["primero 0", "primero 1", "primero 2", "después del relevo"]


def _watch_email_process(db: Database) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TERTULIA_DATABASE_URL": db.url,
        # What it spools stays in the spool (the test writes it): its own queue is nobody's.
        "TERTULIA_QUEUE_URL": "memory://",
        "TERTULIA_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tertulia", "channel", "watch-email"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_worker_process_watches_the_mailbox_and_stores_its_mail(
    db: Database, tenant: Tenant, mail: MailServers, tmp_path: Path
) -> None:
    """A real `tertulia worker`: its consumer starts the watchers, which take the mailbox (recorded
    as the worker's) and read new mail as it arrives; the mail goes through that worker's own queue
    into the conversation, and the mailbox is let go when the worker stops."""
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    env = {
        **os.environ,
        "TERTULIA_DATABASE_URL": db.url,
        "TERTULIA_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "TERTULIA_DATA_DIR": str(tmp_path),
        # A separate worker publishes its jobs' events through Redis (it refuses in-process realtime).
        "TERTULIA_REALTIME_URL": "redis://127.0.0.1:6379/0",
        "TERTULIA_REALTIME_PREFIX": f"test-email-worker-{os.getpid()}",
        "TERTULIA_LOG_LEVEL": "warning",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tertulia", "worker", "--workers", "1"], env=env, stdout=out, stderr=out
        )
    try:
        try:
            _until(lambda: _watch(db, channel.id).mode == email_watch.IDLE, timeout=30, what="the worker's IDLE")
            held = _watch(db, channel.id)
            assert (held.kind, held.pid) == ("worker", worker.pid)
            mail.send(customer_mail(subject="al worker", body="leído por el worker"))
            _until(lambda: messages_of(db, channel.id), timeout=10, what="the message stored by the worker")
        except AssertionError as failure:
            raise AssertionError(f"{failure}; worker log:\n{log.read_text(errors='replace')[-4000:]}") from None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    assert _texts(db, channel.id) == ["leído por el worker"]
    assert fetcher.watched_channels(db, [channel.id]) == set()
    assert _watch(db, channel.id).watched is False


def _last_uid(db: Database, channel_id: int) -> int:
    with db.transaction(write=False) as session:
        state = session.get(Mailbox, channel_id)
        return int(state.last_uid) if state is not None else 0


def test_killing_the_holder_hands_the_mailbox_over_and_nothing_is_lost_or_doubled(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    process = _watch_email_process(db)
    try:
        _until(lambda: fetcher.watched_channels(db, [channel.id]), timeout=60, what="the process's watcher")
        with _watchers(db) as survivor:
            time.sleep(10 * SCAN)
            assert survivor.watching == set()  # the process holds the mailbox
            mail.send(customer_mail(subject="uno", body="leído por el proceso"))
            _until(lambda: _last_uid(db, channel.id) > 0, what="the process reading the first mail")
            assert messages_of(db, channel.id) == []  # spooled only: its queue is nobody's
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            mail.send(customer_mail(subject="dos", body="llegó sin vigilante"))
            _until(lambda: survivor.watching == {channel.id}, what="the takeover")
            _until(lambda: "llegó sin vigilante" in _texts(db, channel.id), what="the mail of the gap")
            time.sleep(0.5)
            mail.send(customer_mail(subject="tres", body="después del relevo"))
            _until(lambda: "después del relevo" in _texts(db, channel.id), what="the mail after the takeover")
        _write_spooled(db)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert sorted(_texts(db, channel.id)) == sorted(
        ["leído por el proceso", "llegó sin vigilante", "después del relevo"]
    )
    assert callback_spool(db).waiting() == 0


MAILBOXES = ("support@shop.example.com", "ana@example.com", "bob@example.net", "list@example.org")
CUSTOMER = "carla@cliente.example"


def _holders(db: Database) -> dict[int, int]:
    """Which process (pid) the recorded watch of each mailbox names, among the live ones."""
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(EmailWatch.channel_id, EmailWatcher.pid).join(EmailWatcher, EmailWatcher.id == EmailWatch.watcher_id)
        )
        return {int(channel_id): int(pid) for channel_id, pid in rows}


class _Customers:
    """Mail written to each of the mailboxes in turn, a few times a second, until stopped."""

    def __init__(self, mail: MailServers, addresses: dict[int, str]) -> None:
        self.mail = mail
        self.addresses = addresses
        self.sent: dict[int, list[str]] = {channel_id: [] for channel_id in addresses}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.15):
            channel_id = list(self.addresses)[n % len(self.addresses)]
            body = f"correo {n}"
            self.mail.send(customer_mail(CUSTOMER, subject=f"asunto {n}", body=body), to=self.addresses[channel_id])
            self.sent[channel_id].append(body)
            n += 1

    def __enter__(self) -> "_Customers":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_the_mailboxes_are_split_between_processes_and_the_survivor_takes_them_all(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """A `tertulia channel watch-email` holding all four mailboxes gives two of them to watchers
    started after it; once it is killed, the survivor takes all four within a few heartbeats. Mail
    delivered all along is stored once each."""
    channels = {
        email_channel(db, tenant, mail, address=address, poll_seconds=3600).id: address for address in MAILBOXES
    }
    everything = set(channels)
    process = _watch_email_process(db)
    customers = _Customers(mail, channels)
    try:
        with customers:
            _until(
                lambda: fetcher.watched_channels(db, list(everything)) == everything,
                timeout=60,
                what="the process watching every mailbox",
            )
            # Its records follow each lock it took.
            _until(lambda: _holders(db) == dict.fromkeys(channels, process.pid), what="the process's records")
            assert {_watch(db, channel_id).kind for channel_id in channels} == {"watch-email"}
            with _watchers(db) as survivor:
                _until(lambda: len(survivor.watching) == 2, timeout=20, what="the survivor's share")
                _until(
                    lambda: fetcher.watched_channels(db, list(everything)) == everything,
                    timeout=10,
                    what="every mailbox watched again",
                )
                time.sleep(4 * HEARTBEAT)  # several heartbeats and scans: the split holds
                assert len(survivor.watching) == 2
                assert fetcher.watched_channels(db, list(everything)) == everything
                _until(lambda: len(_holders(db)) == 4, timeout=5, what="the records")
                holders = _holders(db)
                assert sorted(holders.values()) == sorted([process.pid] * 2 + [os.getpid()] * 2)
                assert {i for i, pid in holders.items() if pid == os.getpid()} == survivor.watching
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                killed = time.monotonic()
                _until(lambda: survivor.watching == everything, timeout=20, what="the takeover")
                took = time.monotonic() - killed
                _until(lambda: set(_holders(db).values()) == {os.getpid()}, timeout=5, what="the records")
                time.sleep(1)
                customers.stop()
                _write_spooled(db)  # what the killed process spooled
                for channel_id, sent in customers.sent.items():
                    _until(
                        lambda channel_id=channel_id, sent=sent: len(messages_of(db, channel_id)) >= len(sent),  # type: ignore[misc]
                        what=f"the mail of channel {channel_id}",
                    )
                time.sleep(0.5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    # Two heartbeats before the dead process stops counting, then a scan.
    assert took < 2 * HEARTBEAT + 3, took
    assert sum(len(sent) for sent in customers.sent.values()) > 30
    for channel_id, sent in customers.sent.items():
        assert sorted(_texts(db, channel_id)) == sorted(sent), channel_id
    assert callback_spool(db).waiting() == 0


def test_a_process_gives_back_its_extra_mailboxes_and_takes_them_again_when_the_other_stops(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """Two sets of watchers in this process: the first takes all four, gives two to the second,
    and takes them back at once when the second stops (a process that stops lets go of its own)."""
    channels = [email_channel(db, tenant, mail, address=address, poll_seconds=3600).id for address in MAILBOXES]
    with _watchers(db) as first:
        _until(lambda: first.watching == set(channels), what="the first watchers")
        with _watchers(db) as second:
            _until(lambda: len(second.watching) == 2, what="the second's share")
            _until(lambda: len(first.watching) == 2, what="the first's share")
            assert first.watching | second.watching == set(channels)
            time.sleep(3 * HEARTBEAT)
            assert (len(first.watching), len(second.watching)) == (2, 2)
            leaving = second.watcher_id
        _until(lambda: first.watching == set(channels), timeout=5, what="the mailboxes taken back")
        with db.transaction(write=False) as session:
            assert session.get(EmailWatcher, leaving) is None
            assert email_watch.live_loads(session, first.watcher_id, channels) == {first.watcher_id: 4}
        mail.send(customer_mail(CUSTOMER, body="después"), to=MAILBOXES[3])
        _until(lambda: messages_of(db, channels[3]), what="the message")
    assert _texts(db, channels[3]) == ["después"]
    with db.transaction(write=False) as session:
        assert session.scalars(select(EmailWatch.watcher_id)).all() == [None] * 4


def test_three_mailboxes_held_by_one_process_end_split_two_and_one(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """The first watchers take all three; once the second run, the first gives one back (it holds
    two more than the second), the second takes it, and two and one stays: neither holds two more
    than the other."""
    channels = [email_channel(db, tenant, mail, address=address, poll_seconds=3600).id for address in MAILBOXES[:3]]
    with _watchers(db) as first:
        _until(lambda: first.watching == set(channels), what="the first watchers")
        with _watchers(db) as second:
            _until(lambda: len(second.watching) == 1, timeout=10, what="the second's mailbox")
            assert len(first.watching) == 2
            assert first.watching | second.watching == set(channels)
            time.sleep(2 * HEARTBEAT)  # ten scans and two heartbeats: nothing moves
            assert (len(first.watching), len(second.watching)) == (2, 1)
            with db.transaction(write=False) as session:
                loads = email_watch.live_loads(session, first.watcher_id, channels)
            assert loads == {first.watcher_id: 2, second.watcher_id: 1}
            assert fetcher.watched_channels(db, channels) == set(channels)


def test_a_mailbox_that_a_live_process_cannot_take_is_watched_beyond_the_share(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """A process that keeps its heartbeat but takes no mailbox (its locks' connection failing) still
    counts in the split; what it leaves unwatched is taken by another process, beyond its share,
    after two heartbeats, and kept."""
    channels = {email_channel(db, tenant, mail, address=a, poll_seconds=3600).id: a for a in MAILBOXES[:2]}
    with db.transaction() as session:
        stuck = email_watch.register(session, "worker")
    beating = threading.Event()

    def keep_beating() -> None:
        while not beating.wait(HEARTBEAT / 2):
            with db.transaction() as session:
                email_watch.beat(session, stuck, "worker")

    beater = threading.Thread(target=keep_beating, daemon=True)
    beater.start()
    try:
        with _watchers(db) as watchers:
            _until(lambda: len(watchers.watching) == 1, what="its share")
            shared = time.monotonic()
            _until(lambda: watchers.watching == set(channels), what="the unwatched mailbox taken")
            took = time.monotonic() - shared
            time.sleep(3 * HEARTBEAT)
            assert watchers.watching == set(channels)  # not given back, to be left unwatched again
            for address in channels.values():
                mail.send(customer_mail(CUSTOMER, body=f"para {address}"), to=address)
            for channel_id, address in channels.items():
                _until(lambda channel_id=channel_id: messages_of(db, channel_id), what=f"the mail of {address}")  # type: ignore[misc]
            time.sleep(0.5)
    finally:
        beating.set()
        beater.join(5)
    assert email_watch.LIVE_HEARTBEATS * HEARTBEAT - 0.5 < took < (email_watch.LIVE_HEARTBEATS + 2) * HEARTBEAT + 1
    for channel_id, address in channels.items():
        assert _texts(db, channel_id) == [f"para {address}"]


def _watcher_cell(page: str) -> str:
    return page.split('data-testid="email-watcher">')[1].split("</dd>", maxsplit=1)[0]


def test_the_channel_page_and_the_api_say_which_process_watches_the_mailbox(
    client: TestClient, db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = f"/settings/channels/{channel.id}"
    api = f"/api/v1/channels/{channel.id}"
    english, spanish = {"Accept-Language": "en"}, {"Accept-Language": "es"}
    assert "Not watched: no process holds it; the minute sweep reads it." in _watcher_cell(
        client.get(page, headers=english).text
    )
    assert client.get(api).json()["watcher"] == {
        "watched": False,
        "process": None,
        "since": None,
        "mode": None,
        "last_check_at": None,
        "last_mail_at": None,
        "last_error": None,
        "last_error_at": None,
    }
    host, pid = socket.gethostname(), os.getpid()
    with _watchers(db, kind="worker"):
        _until(lambda: _watch(db, channel.id).mode == email_watch.IDLE, what="the watcher in IDLE")
        _until(lambda: _watch(db, channel.id).checked_at, what="its read right after the SELECT")
        shown = _watcher_cell(client.get(page, headers=english).text)
        assert f"worker on {host} (pid {pid}) since" in shown
        assert "IMAP IDLE: new mail at once" in shown
        assert "last sign of life" in shown
        shown = _watcher_cell(client.get(page, headers=spanish).text)
        assert f"worker en {host} (pid {pid}) desde" in shown
        assert "IMAP IDLE: el correo nuevo al instante" in shown
        assert "Vigilado por" in client.get(page, headers=spanish).text
        watcher = client.get(api).json()["watcher"]
        assert watcher["watched"] is True
        assert watcher["mode"] == "idle"
        assert watcher["since"] is not None
        assert {key: watcher["process"][key] for key in ("kind", "host", "pid")} == {
            "kind": "worker",
            "host": host,
            "pid": pid,
        }
        assert watcher["last_check_at"] is not None
        assert watcher["last_mail_at"] is None
        mail.send(customer_mail(body="vigilado"))
        _until(lambda: messages_of(db, channel.id), what="the message")
        # The mailbox's place is moved once the spool has the mail, just after the inline task wrote it.
        _until(lambda: client.get(api).json()["watcher"]["last_mail_at"], timeout=5, what="the last mail")
    # Stopped: nobody holds the mailbox; what was last read stays.
    after = client.get(page, headers=spanish).text
    assert "Sin vigilar: ningún proceso lo tiene; lo lee la revisión de cada minuto." in _watcher_cell(after)
    watcher = client.get(api).json()["watcher"]
    assert (watcher["watched"], watcher["process"], watcher["mode"]) == (False, None, None)
    assert watcher["last_mail_at"] is not None
    # A process that died without letting go shows as watching until its heartbeat is stale.
    with db.transaction() as session:
        gone = email_watch.register(session, "serve")
        email_watch.take(session, channel.id, gone)
        email_watch.set_mode(session, channel.id, gone, email_watch.POLL)
    watcher = client.get(api).json()["watcher"]
    assert (watcher["watched"], watcher["process"]["kind"], watcher["mode"]) == (True, "serve", "poll")
    assert "read every 3600 s" in _watcher_cell(client.get(page, headers=english).text)
    with db.transaction() as session:
        stale = utcnow() - timedelta(seconds=email_watch.STALE_HEARTBEATS * HEARTBEAT + 1)
        session.execute(update(EmailWatcher).where(EmailWatcher.id == gone).values(heartbeat_at=stale))
    assert client.get(api).json()["watcher"]["watched"] is False
    assert "Not watched" in _watcher_cell(client.get(page, headers=english).text)


def _watch(db: Database, channel_id: int) -> email_watch.WatchState:
    with db.transaction(write=False) as session:
        return email_watch.watch_of(session, channel_id)


def test_disconnecting_the_channel_stops_its_watcher(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    with _watchers(db) as watchers:
        _until(lambda: watchers.watching == {channel.id}, what="the watcher")
        with db.transaction() as session:
            stored = session.get(Channel, channel.id)
            assert stored is not None
            do_disconnect_channel(session, tenant.actor(), stored)
        _until(lambda: watchers.watching == set(), timeout=5, what="the watcher to stop")
        _until(lambda: not fetcher.watched_channels(db, [channel.id]), timeout=5, what="the mailbox let go")
        assert not [t for t in threading.enumerate() if t.name == f"mail-{channel.id}"]
        mail.send(customer_mail(body="nadie la lee"))
        time.sleep(1.5)
    assert messages_of(db, channel.id) == []


def test_a_changed_setting_is_picked_up_without_a_restart(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    with _watchers(db) as watchers:
        _until(lambda: watchers.watching == {channel.id}, what="the watcher")
        with db.transaction() as session:
            stored = session.get(Channel, channel.id)
            assert stored is not None
            do_update_channel_config(session, tenant.actor(), stored, {"folder": "Sent", "sent_folder": ""})
        time.sleep(0.5)  # the watcher started again on the new folder
        mail.send(customer_mail(body="en la otra carpeta"), to=SUPPORT)  # INBOX: no longer read
        mail.dovecot.deliver(SUPPORT, customer_mail(subject="otra", body="leída en Sent").as_bytes(), folder="Sent")
        _until(lambda: messages_of(db, channel.id), what="the message of the new folder")
        time.sleep(0.5)
    assert _texts(db, channel.id) == ["leída en Sent"]


def test_a_mailbox_without_idle_is_read_every_poll_seconds_and_the_minute_sweep_leaves_it(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail, incoming_protocol="pop3", incoming_port=mail.dovecot.pop3_port)
    with db.transaction() as session:
        # Below the page's 10 s lower bound, to keep the test short.
        stored = session.get(Channel, channel.id)
        assert stored is not None
        stored.config = {**stored.config, "poll_seconds": 1}
    with _watchers(db) as watchers:
        _until(lambda: watchers.watching == {channel.id}, what="the watcher")
        _until(lambda: _state_fetched(db, channel.id), what="the first look")
        for n in range(3):
            mail.send(customer_mail(subject=f"pop {n}", body=f"sondeo {n}"))
            _until(lambda n=n: len(messages_of(db, channel.id)) == n + 1, timeout=5, what=f"message {n}")  # type: ignore[misc]
        assert _watch(db, channel.id).mode == email_watch.POLL
    assert _texts(db, channel.id) == ["sondeo 0", "sondeo 1", "sondeo 2"]
    # The minute sweep leaves a mailbox to the watcher holding it (of whichever process), and reads it
    # once nobody does.
    mail.send(customer_mail(subject="pop 3", body="sondeo 3"))
    time.sleep(1.1)
    assert fetcher.due_channels(db) == [channel.id]
    holder = ProcessLocks(db.url, fetcher.WATCH_NAMESPACE)
    try:
        assert holder.claim([channel.id]) == {channel.id}
        assert fetcher.fetch_due_mailboxes(db) == 0
    finally:
        holder.close()
    assert fetcher.fetch_due_mailboxes(db) == 1


def _state_fetched(db: Database, channel_id: int) -> bool:
    with db.transaction(write=False) as session:
        return session.scalar(select(Mailbox.fetched_at).where(Mailbox.channel_id == channel_id)) is not None


class _Proxy:
    """A TCP relay to the IMAP server whose open connections the test can cut (a dropped link); with
    `tls`, it speaks TLS to the client (an IMAP server on port 993, as most providers run)."""

    def __init__(self, target: int, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls = tls
        self.port = free_port()
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._listener.accept()
                if self.tls is not None:
                    near = self.tls.wrap_socket(near, server_side=True)
            except OSError:
                if self._listener.fileno() == -1:
                    return
                continue
            far = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self.accepted += 1
                self._open += [near, far]
            threading.Thread(target=self._relay, args=(near, far), daemon=True).start()

    @staticmethod
    def _relay(near: socket.socket, far: socket.socket) -> None:
        # Both directions in one thread: a TLS socket is not read and written from two threads at once.
        with suppress(OSError, ValueError):
            while True:
                ready = [s for s in (near, far) if isinstance(s, ssl.SSLSocket) and s.pending()]
                if not ready:
                    ready, _, _ = io_select.select([near, far], [], [], 1.0)
                for source in ready:
                    chunk = source.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    (far if source is near else near).sendall(chunk)
        for sock in (near, far):
            with suppress(OSError):
                sock.close()

    def cut(self) -> None:
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    sock.close()
            self._open.clear()

    def close(self) -> None:
        self._listener.close()
        self.cut()


def test_a_dropped_connection_is_opened_again(db: Database, tenant: Tenant, mail: MailServers) -> None:
    proxy = _Proxy(mail.dovecot.imap_port)
    try:
        channel = email_channel(db, tenant, mail, incoming_port=proxy.port, poll_seconds=3600)
        with _watchers(db) as watchers:
            _until(lambda: watchers.watching == {channel.id}, what="the watcher")
            _until(lambda: proxy.accepted >= 2, what="the IDLE connection and its first read")
            time.sleep(0.5)
            before = proxy.accepted
            proxy.cut()
            _until(lambda: proxy.accepted > before + 1, timeout=10, what="a new connection")
            time.sleep(0.5)
            mail.send(customer_mail(body="tras la caída"))
            _until(lambda: messages_of(db, channel.id), timeout=10, what="the message")
            assert watchers.watching == {channel.id}
    finally:
        proxy.close()
    # Not the channel's failure (it came back at once), but the mailbox's page says it happened.
    assert _channel_error(db, channel.id) is None
    dropped = _watch(db, channel.id)
    assert dropped.error is not None
    assert dropped.error_at is not None
    assert _texts(db, channel.id) == ["tras la caída"]


def test_a_mail_server_that_stays_unreachable_shows_on_the_channel(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail, incoming_port=free_port())  # nothing listens there
    with _watchers(db) as watchers:
        _until(lambda: watchers.watching == {channel.id}, what="the watcher")
        # The mailbox shows the failure at once; the channel is not in error for what may be a blip.
        _until(lambda: _mailbox_error(db, channel.id), timeout=10, what="the mailbox's error")
        assert _channel_error(db, channel.id) is None
        with travel(PROVIDER_OUTAGE_AFTER):  # still failing five minutes later: an outage
            _until(lambda: _channel_error(db, channel.id), timeout=20, what="the channel's last error")
        assert watchers.watching == {channel.id}  # it keeps trying
    assert "could not be reached" in (_channel_error(db, channel.id) or "")


def _channel_error(db: Database, channel_id: int) -> str | None:
    with db.transaction(write=False) as session:
        return session.scalar(select(Channel.last_error).where(Channel.id == channel_id))


def _mailbox_error(db: Database, channel_id: int) -> str | None:
    with db.transaction(write=False) as session:
        return session.scalar(select(Mailbox.error).where(Mailbox.channel_id == channel_id))


def test_idle_is_issued_again_on_the_same_connection_and_a_stop_ends_it_at_once(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail)
    with email_adapter.idle_session(channel) as client:
        email_adapter.select_folder(client, "INBOX")
        started = time.monotonic()
        assert email_adapter.wait_idle(client, 1.0) is False  # nothing arrived: DONE after a second
        assert 0.9 < time.monotonic() - started < 3
        assert email_adapter.wait_idle(client, 1.0) is False  # issued again, on the same connection
        assert client.noop()[0] == "OK"
        started = time.monotonic()
        assert email_adapter.wait_idle(client, 60.0, lambda: time.monotonic() - started > 0.3) is False
        assert time.monotonic() - started < 2.5
        mail.send(customer_mail())
        assert email_adapter.wait_idle(client, 30.0) is True
    # The watchers re-issue IDLE well inside RFC 2177's 29 minutes; with a short period mail still
    # comes in across several re-issues.
    assert email_adapter.IDLE_SECONDS <= 29 * 60
    with _watchers(db, idle_seconds=0.5) as watchers:
        _until(lambda: watchers.watching == {channel.id}, what="the watcher")
        time.sleep(2)
        mail.send(customer_mail(subject="otra", body="tras varios IDLE"))
        _until(lambda: "tras varios IDLE" in _texts(db, channel.id), what="the message")


def test_an_idle_refused_by_a_dead_server_is_a_transient_error(db: Database, tenant: Tenant, mail: MailServers) -> None:
    proxy = _Proxy(mail.dovecot.imap_port)
    try:
        channel = email_channel(db, tenant, mail, incoming_port=proxy.port)
        with email_adapter.idle_session(channel) as client:
            email_adapter.select_folder(client, "INBOX")
            threading.Timer(0.5, proxy.cut).start()
            with pytest.raises(email_adapter.TransientError):
                email_adapter.wait_idle(client, 30.0)
            with suppress(imaplib.IMAP4.error, OSError):
                client.noop()
    finally:
        proxy.close()


def _lock_backend(db: Database) -> int | None:
    with db.transaction(write=False) as session:
        found = session.execute(
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2")
        ).scalar()
        return int(found) if found is not None else None


def test_a_watcher_whose_lock_connection_is_lost_stops_and_claims_again(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("advisory locks live on a PostgreSQL connection; SQLite's file locks have none to lose")
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    with _watchers(db) as watchers:
        _until(lambda: watchers.watching == {channel.id}, what="the watcher")
        first = _lock_backend(db)
        assert first is not None
        with db.transaction() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        # The locks went with that connection: the watcher stops, then the mailbox is claimed again
        # on a new connection and watched again.
        _until(lambda: _lock_backend(db) not in (None, first), what="the lock taken again")
        _until(lambda: watchers.watching == {channel.id}, what="the watcher again")
        time.sleep(1)
        mail.send(customer_mail(body="tras perder el bloqueo"))
        _until(lambda: messages_of(db, channel.id), what="the message")
        time.sleep(0.5)
    assert _texts(db, channel.id) == ["tras perder el bloqueo"]


def test_idle_over_tls_reads_mail_as_it_arrives(
    db: Database, tenant: Tenant, mail: MailServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IDLE wait looks at the socket and at what TLS already decrypted (`pending`): a server
    on 993, as providers run IMAP."""
    authority = TestAuthority(tmp_path)
    certificate = authority.issue("127.0.0.1")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(certificate.cert_file, certificate.key_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca_file))  # what the default context trusts
    proxy = _Proxy(mail.dovecot.imap_port, tls=server_side)
    try:
        channel = email_channel(db, tenant, mail, incoming_port=proxy.port, incoming_security="ssl")
        with email_adapter.idle_session(channel) as client:
            assert isinstance(client.socket(), ssl.SSLSocket)
            email_adapter.select_folder(client, "INBOX")
            assert email_adapter.wait_idle(client, 0.5) is False
            threading.Timer(0.5, lambda: mail.send(customer_mail(subject="tls", body="por TLS"))).start()
            assert email_adapter.wait_idle(client, 30.0) is True
        with _watchers(db) as watchers:
            _until(lambda: watchers.watching == {channel.id}, what="the watcher")
            _until(lambda: messages_of(db, channel.id), what="the first message")
            time.sleep(1)
            mail.send(customer_mail(subject="tls 2", body="otra por TLS"))
            _until(lambda: len(messages_of(db, channel.id)) == 2, timeout=10, what="the second message")
    finally:
        proxy.close()
    assert _texts(db, channel.id) == ["por TLS", "otra por TLS"]
