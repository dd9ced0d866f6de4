"""The guarantees that need real processes: a process killed with SIGKILL right after its commit
loses no event, and two worker processes never feed one consumer at the same time."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tertulia.events import dispatcher
from tertulia.kit.db import Database
from tests.events.support import Recorder, all_events, write_events

ROOT = Path(__file__).resolve().parents[2]

_WRITE_THEN_DIE = """
import os, signal, sys
from tertulia.events import dispatcher, service
from tertulia.events.types import EventType
from tertulia.kit.db import Database, on_commit

url, delivered_path = sys.argv[1], sys.argv[2]

def handle(event):
    with open(delivered_path, "a") as out:
        out.write(f"{event.id}\\n")

# This process has the consumer too: had it lived, its after-commit nudge would have delivered.
dispatcher.register(dispatcher.Consumer("survivor", handle))
db = Database(url)
with db.transaction() as session:
    for n in range(3):
        service.emit(session, service.Event(EventType.CONTACT_CREATED, 1, {"contact_id": n, "source": None}))
    # Registered before the event log's own after-commit work: the process dies right after COMMIT.
    on_commit(session, lambda: os.kill(os.getpid(), signal.SIGKILL))
print("not reached")
"""

_WORKER = """
import fcntl, json, os, sys, time
from tertulia.events import dispatcher
from tertulia.kit.db import Database

url, lock_path, log_path, stop_path = sys.argv[1:5]
db = Database(url)
lock = open(lock_path, "a")
log = open(log_path, "a", buffering=1)

def handle(event):
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the other process: an overlap
    except BlockingIOError:
        log.write(json.dumps({"overlap": event.id}) + "\\n")
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        log.write(json.dumps({"pid": os.getpid(), "id": event.id}) + "\\n")
        time.sleep(0.002)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)

consumer = dispatcher.Consumer("shared", handle)
print("ready", flush=True)
while not os.path.exists(stop_path):
    dispatcher.dispatch(db, [consumer], settle_wait=0.05)
    time.sleep(0.005)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_events_committed_by_a_process_killed_before_dispatch_are_delivered_later(db: Database, tmp_path: Path) -> None:
    delivered = tmp_path / "delivered.txt"
    process = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", _WRITE_THEN_DIE, db.url, str(delivered)],
        env=_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    assert b"not reached" not in process.stdout
    assert not delivered.exists()  # it died before delivering anything
    stored = all_events(db)
    assert [e.payload["contact_id"] for e in stored] == [0, 1, 2]
    # A restarted dispatcher, from the stored (here: no) position.
    restarted = Recorder("survivor")
    dispatcher.dispatch(db, [restarted.consumer()])
    assert restarted.ids == [e.id for e in stored]


def test_two_worker_processes_never_feed_one_consumer_at_the_same_time(db: Database, tmp_path: Path) -> None:
    lock, stop = tmp_path / "handler.lock", tmp_path / "stop"
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = [
        subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            [sys.executable, "-c", _WORKER, db.url, str(lock), str(log), str(stop)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for log in logs
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == b"ready", worker.stderr.read() if worker.stderr else b""
        ids: list[int] = []
        for _ in range(12):
            ids += write_events(db, 25)
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = {s.name: s for s in dispatcher.consumer_status(db)}
            if "shared" in status and status["shared"].last_event_id >= ids[-1]:
                break
            time.sleep(0.1)
    finally:
        stop.touch()
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    for worker in workers:
        assert worker.returncode == 0, worker.stderr.read() if worker.stderr else b""
    lines = [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()]
    assert [line for line in lines if "overlap" in line] == []
    handled = [line["id"] for line in lines]
    assert set(handled) == set(ids)  # at least once: nothing missing
    for log in logs:
        if log.exists():
            own = [json.loads(line)["id"] for line in log.read_text().splitlines()]
            assert own == sorted(own)
