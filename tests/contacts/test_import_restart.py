"""A CSV import survives the end of the process running it (review finding M9).

Real `tertulia worker` processes: the first is stopped with SIGTERM (a deploy) in the middle of an
import and hands the job back to the queue; the second resumes it and is killed with SIGKILL; the
third, started once the dead runner's heartbeat is old, finishes it. Nothing lost, nothing doubled.
"""

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from tertulia.contacts import import_runner
from tertulia.contacts.import_jobs import do_create_import, do_start_import
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.models import Contact
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant

ROWS = 6_000
# Rows per committed batch in the workers (TERTULIA_IMPORT_BATCH_SIZE): twelve batches, so each stop
# lands with batches still to go, at half the rows of the default size's six.
BATCH_SIZE = 500
REJECT_EVERY = 499  # rows with a broken email, rejected, spread over every batch


def _csv() -> bytes:
    lines = ["name,email"]
    for n in range(ROWS):
        email = f"not-an-email-{n}" if n % REJECT_EVERY == 0 else f"person{n}@example.com"
        lines.append(f"Person {n},{email}")
    return ("\n".join(lines) + "\n").encode()


def _job(db: Database, job_id: int) -> ImportJob:
    with db.transaction(write=False) as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        session.expunge(job)
        return job


@contextmanager
def _worker(db: Database, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TERTULIA_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "TERTULIA_IMPORT_BATCH_SIZE": str(BATCH_SIZE),
        # A separate worker publishes its jobs' events through Redis (it refuses in-process realtime).
        "TERTULIA_REALTIME_URL": "redis://127.0.0.1:6379/0",
        "TERTULIA_REALTIME_PREFIX": f"test-import-restart-{os.getpid()}",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tertulia", "worker", "--workers", "1"], env=env, stdout=out, stderr=out
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


def _wait_for(condition: object, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out; worker log:\n{log.read_text(errors='replace')[-4000:]}")


def test_an_import_survives_a_deploy_and_a_kill(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    queue.huey.immediate = False  # the job's task goes to the queue the worker processes consume
    queue.huey.flush()
    log = tmp_path / "worker.log"
    try:
        with db.transaction() as session:
            job = do_create_import(session, tenant.actor(), "people.csv", _csv())
            mapping = {"name": "first_name", "email": "email"}
            do_start_import(session, tenant.actor(), job, mapping, update_existing=False)
            job_id = job.id

        with _worker(db, log) as first:
            _wait_for(lambda: _job(db, job_id).processed_rows > 0, 120, log)
            first.send_signal(signal.SIGTERM)
            first.wait(60)
        handed_back = _job(db, job_id)
        assert handed_back.status == ImportStatus.QUEUED
        assert 0 < handed_back.processed_rows < ROWS, "the import ended before the stop: make the file larger"

        with _worker(db, log) as second:
            _wait_for(lambda: _job(db, job_id).processed_rows > handed_back.processed_rows, 120, log)
            second.send_signal(signal.SIGKILL)
            second.wait()
        killed = _job(db, job_id)
        assert killed.status == ImportStatus.RUNNING
        assert handed_back.processed_rows < killed.processed_rows < ROWS, "the import ended before the kill"

        # Time passes: the dead runner's heartbeat is older than a sweep waits for.
        with db.transaction() as session:
            session.execute(
                update(ImportJob)
                .where(ImportJob.id == job_id)
                .values(updated_at=utcnow() - import_runner.RESUME_AFTER - timedelta(seconds=1))
            )

        with _worker(db, log):
            _wait_for(lambda: _job(db, job_id).status in (ImportStatus.DONE, ImportStatus.FAILED), 180, log)
    finally:
        queue.huey.flush()

    done = _job(db, job_id)
    rejected = len(range(0, ROWS, REJECT_EVERY))
    assert done.status == ImportStatus.DONE, done.error
    assert (done.total_rows, done.processed_rows) == (ROWS, ROWS)
    assert done.created_count == ROWS - rejected
    assert (done.updated_count, done.unchanged_count) == (0, 0)
    assert done.rejected_count == rejected
    with db.transaction(write=False) as session:
        contacts = session.scalar(select(func.count()).where(Contact.workspace_id == tenant.workspace_id))
        distinct = session.scalar(
            select(func.count(func.distinct(Contact.email))).where(Contact.workspace_id == tenant.workspace_id)
        )
    assert contacts == distinct == ROWS - rejected
    assert done.report_path is not None
    report = list(csv.reader(io.StringIO(import_runner.data_path(done.report_path).read_text(encoding="utf-8"))))
    lines = [row[-1].split(":")[0] for row in report[1:]]
    assert lines == [f"line {n + 2}" for n in range(0, ROWS, REJECT_EVERY)]
