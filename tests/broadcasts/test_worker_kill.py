"""A broadcast survives the worker sending it being killed (SIGKILL) mid-send: two more worker
processes go on together where it stopped, and the local fake provider received every recipient's message
exactly once (it counts deliveries per idempotency key, as providers that take one do), within the
channel's pace in every second."""

import bisect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select

from tertulia.broadcasts import service
from tertulia.broadcasts.models import Broadcast
from tertulia.kit import queue
from tertulia.kit.db import Database
from tests.broadcasts.support import broadcast_messages, customers_write, draft, fake_channel, get
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider

RECIPIENTS = 40
RATE = 10
# The pace counts a send when a worker claims it; the fake stamps it when the request arrives, a
# commit and a request later, which on a loaded machine varies (see test_whatsapp_pace_workers.py;
# the exact bound is tested with a controllable clock in test_lifecycle.py and the outbox's tests).
JITTER = 0.5
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker(db: Database, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TERTULIA_DATABASE_URL": db.engine.url.render_as_string(hide_password=False)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.broadcasts.fake_worker", "2"], env=env, stdout=out, stderr=out, cwd=ROOT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out; worker log:\n{log.read_text(errors='replace')[-4000:]}")


def test_a_worker_killed_mid_broadcast(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url, messages_per_second=RATE)
        ids = customers_write(db, channel, [f"+52155{n:08d}" for n in range(RECIPIENTS)])
        broadcast_id = draft(
            db, tenant, name="Aviso", audience="all", channel_id=channel.id, content={"default": {"text": "Hola"}}
        )
        queue.huey.immediate = False  # the start goes to the queue the worker processes consume
        queue.huey.flush()
        try:
            with db.transaction() as session:
                item = service.access_broadcast(session, tenant.actor(), broadcast_id)
                service.do_schedule(session, tenant.actor(), item, None)
            with worker(db, log) as first:
                wait_for(lambda: len(provider.deliveries) >= RATE, 120, log)
                first.send_signal(signal.SIGKILL)
                first.wait()
            at_kill = len(provider.deliveries)
            assert 0 < at_kill < RECIPIENTS, "the broadcast ended before the kill"
            assert get(db, broadcast_id).status == "sending"
            # Two worker processes go on with it together (claims: FOR UPDATE SKIP LOCKED on PostgreSQL).
            with worker(db, log), worker(db, log):
                wait_for(lambda: get(db, broadcast_id).status == "completed", 120, log)
        finally:
            queue.huey.flush()
            queue.huey.immediate = True
    messages = broadcast_messages(db, broadcast_id)
    assert sorted(m.contact_id for m in messages) == sorted(ids)  # one message per recipient
    assert {m.status for m in messages} == {"sent"}
    assert sorted(provider.deliveries) == sorted(f"tertulia-msg-{m.id}" for m in messages)
    assert set(provider.deliveries.values()) == {1}
    times = sorted(t for t, _key in provider.arrivals)
    busiest = max(bisect.bisect_left(times, t + 1.0 - JITTER) - i for i, t in enumerate(times))
    assert busiest <= RATE
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Broadcast)) == 1
