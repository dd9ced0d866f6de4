"""Import jobs on the queue: which jobs the sweep queues again, one runner at a time, and the size of
its committed batches."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from tertulia.contacts import import_runner
from tertulia.contacts.import_jobs import do_create_import, do_start_import
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.fencing import FencedRun, LostClaim
from tertulia.kit.settings import get_settings
from tests.conftest import Tenant


def _job(db: Database, tenant: Tenant, status: ImportStatus, age: timedelta) -> int:
    with db.transaction() as session:
        job = ImportJob(
            workspace_id=tenant.workspace_id,
            user_id=tenant.owner_id,
            filename="a.csv",
            file_path=f"{tenant.workspace_id}/a.csv",
            mapping={"email": "email"},
            status=status,
        )
        session.add(job)
        session.flush()
        session.execute(update(ImportJob).where(ImportJob.id == job.id).values(updated_at=utcnow() - age))
        return job.id


def test_the_sweep_queues_lost_and_stale_jobs_but_not_live_ones(db: Database, tenant: Tenant) -> None:
    stale = import_runner.RESUME_AFTER + timedelta(seconds=5)
    fresh = timedelta(seconds=5)
    running_stale = _job(db, tenant, ImportStatus.RUNNING, stale)
    _job(db, tenant, ImportStatus.RUNNING, fresh)
    queued_long = _job(db, tenant, ImportStatus.QUEUED, stale)
    queued_now = _job(db, tenant, ImportStatus.QUEUED, fresh)
    for status in (ImportStatus.UPLOADED, ImportStatus.DONE, ImportStatus.FAILED):
        _job(db, tenant, status, stale)
    assert import_runner.interrupted_import_ids(db) == [running_stale, queued_long]
    # A consumer that starts takes every queued job: their tasks may have died with the last process.
    at_start = import_runner.interrupted_import_ids(db, queued_for=timedelta(0))
    assert at_start == [running_stale, queued_long, queued_now]


def test_only_one_runner_holds_a_job(db: Database, tenant: Tenant) -> None:
    job_id = _job(db, tenant, ImportStatus.QUEUED, timedelta(0))
    first = import_runner.claim(db, job_id)
    assert first is not None
    assert import_runner.claim(db, job_id) is None  # running, with a live heartbeat
    with db.transaction() as session:  # the first runner stalls past RESUME_AFTER
        session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(updated_at=first - import_runner.RESUME_AFTER - timedelta(seconds=1))
        )
    second = import_runner.claim(db, job_id, stale_after=import_runner.RESUME_AFTER)
    assert second is not None
    stalled = FencedRun(db, ImportJob, job_id, running=ImportStatus.RUNNING, failed=ImportStatus.FAILED, token=first)
    with pytest.raises(LostClaim), db.transaction() as session:
        stalled.write(session, processed_rows=999)
    taken_over = FencedRun(
        db, ImportJob, job_id, running=ImportStatus.RUNNING, failed=ImportStatus.FAILED, token=second
    )
    with db.transaction() as session:
        taken_over.write(session, processed_rows=10)
    with db.transaction(write=False) as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        assert (job.status, job.processed_rows) == (ImportStatus.RUNNING, 10)


def test_a_queued_import_commits_batches_of_the_configured_size(
    db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queued import commits `TERTULIA_IMPORT_BATCH_SIZE` rows at a time: a runner asked to stop hands
    the job back after one batch of exactly that many rows, and the next run finishes the rest."""
    monkeypatch.setattr(get_settings(), "import_batch_size", 3)
    rows = "\n".join(f"Person {n},person{n}@example.com" for n in range(10))
    import_runner.release_running_imports(timeout=0.1)  # a consumer stopping: runs stop after a batch
    try:
        with db.transaction() as session:
            job = do_create_import(session, tenant.actor(), "people.csv", f"name,email\n{rows}\n".encode())
            do_start_import(
                session, tenant.actor(), job, {"name": "first_name", "email": "email"}, update_existing=False
            )
            job_id = job.id
    finally:
        import_runner.accept_runs()
    with db.transaction(write=False) as session:
        handed_back = session.get(ImportJob, job_id)
        assert handed_back is not None
        assert (handed_back.status, handed_back.processed_rows, handed_back.created_count) == (
            ImportStatus.QUEUED,
            3,
            3,
        )
    import_runner.run_import(db, job_id)
    with db.transaction(write=False) as session:
        done = session.get(ImportJob, job_id)
        assert done is not None
        assert (done.status, done.processed_rows, done.created_count) == (ImportStatus.DONE, 10, 10)
