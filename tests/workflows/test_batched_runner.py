"""The runner claims due runs in batches: on PostgreSQL two workers split the due runs between them
(a run another worker holds is skipped, not waited for) and never process a run twice; a run whose
turn raises rolls back alone and the rest of its batch goes on."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.workflows import repository as repo
from tertulia.workflows import runner, service
from tertulia.workflows.models import RunStatus, WorkflowRun, WorkflowRunLog, WorkflowVersion
from tests.conftest import Tenant

pytestmark = pytest.mark.usefixtures("no_background_work")

FLOW = {
    "trigger": {"type": "manual"},
    "steps": [
        {"id": "wait", "type": "wait", "config": {"duration": {"amount": 1, "unit": "minutes"}}, "next": "tag"},
        {"id": "tag", "type": "add_tags", "config": {"tags": ["resumed"]}, "next": "name"},
        {"id": "name", "type": "update_field", "config": {"field": "last_name", "value": "Done"}},
    ],
}
POLICY = runner.Policy(allow_private=False)


@pytest.fixture
def waiting_runs(db: Database, tenant: Tenant) -> list[int]:
    """24 runs of one workflow, each at its one-minute wait."""
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), "Batch", FLOW)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        contacts_service.ensure_tags(session, tenant.workspace_id, ["resumed"])  # no race to create it
        contacts = [Contact(workspace_id=tenant.workspace_id, first_name=f"C{n}") for n in range(24)]
        session.add_all(contacts)
        session.flush()
        ids = []
        for contact in contacts:
            run = runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
            assert run is not None
            ids.append(run.id)
    runner.run_due(db, policy=POLICY)
    return ids


def _steps_logged(db: Database, run_ids: list[int]) -> dict[int, list[str]]:
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(WorkflowRunLog.run_id, WorkflowRunLog.step_id)
            .where(WorkflowRunLog.run_id.in_(run_ids))
            .order_by(WorkflowRunLog.id)
        )
        found: dict[int, list[str]] = {run_id: [] for run_id in run_ids}
        for run_id, step_id in rows:
            found[run_id].append(step_id)
        return found


def test_a_worker_skips_the_runs_another_worker_holds(db: Database, waiting_runs: list[int]) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a second worker waits for the first")
    moment = utcnow() + timedelta(minutes=2)
    with db.transaction() as first:
        held = [run.id for run in repo.claim_due_runs(first, moment, 10)]
        with db.transaction() as second:
            other = [run.id for run in repo.claim_due_runs(second, moment, 100)]
    assert len(held) == 10
    assert sorted(held + other) == sorted(waiting_runs)  # disjoint, and together every due run


def test_two_workers_resume_every_run_once(db: Database, waiting_runs: list[int]) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a second worker waits for the first")
    moment = utcnow() + timedelta(minutes=2)
    turns = [0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(index: int) -> None:
        try:
            start.wait()
            while taken := runner.run_due(db, now=moment, policy=POLICY, batch_size=3):
                turns[index] += taken
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(turns) == len(waiting_runs)  # one turn each: no run was claimed by both workers
    logged = _steps_logged(db, waiting_runs)
    assert all(steps == ["wait", "tag", "name"] for steps in logged.values()), logged
    with db.transaction(write=False) as session:
        finished = session.scalar(
            select(func.count()).where(WorkflowRun.id.in_(waiting_runs), WorkflowRun.status == RunStatus.FINISHED)
        )
    assert finished == len(waiting_runs)


def test_a_turn_that_raises_rolls_back_alone(
    db: Database, waiting_runs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = waiting_runs[1]
    real = runner._turn_of

    def turn_of(session, run, now, loaded, deferred=None):  # type: ignore[no-untyped-def]
        if run.id == broken:
            raise RuntimeError("a bug in one step")
        return real(session, run, now, loaded, deferred)

    monkeypatch.setattr(runner, "_turn_of", turn_of)
    moment = utcnow() + timedelta(minutes=2)
    runner.run_due(db, now=moment, policy=POLICY, batch_size=5)
    with db.transaction(write=False) as session:
        statuses = {run.id: run.status for run in session.scalars(select(WorkflowRun))}
    assert statuses[broken] == RunStatus.WAITING  # left due for a later sweep
    assert all(status == RunStatus.FINISHED for run_id, status in statuses.items() if run_id != broken)
    monkeypatch.setattr(runner, "_turn_of", real)
    runner.run_due(db, now=moment, policy=POLICY)
    logged = _steps_logged(db, waiting_runs)
    assert logged[broken] == logged[waiting_runs[0]] == ["wait", "tag", "name"]
