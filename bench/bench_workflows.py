"""How fast due workflow runs are resumed: RUNS runs waiting on one resume time, then one sweep.

`python -m bench workflows`. For each database (TERTULIA_BENCH_WORKFLOWS_DBS, default
"sqlite,postgresql"): a workspace with RUNS contacts, a published workflow (wait 1 minute, add a tag,
add a second tag) and one run per contact started and taken to its wait; then one worker runs
`runner.run_due` at a moment past the wait. Reported: seconds to resume them all, runs and steps per
second. One worker, in this process (the issue's target is two workers on PostgreSQL).
"""

import os
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor
from tertulia.workflows import runner, service
from tertulia.workflows.models import WorkflowRun, WorkflowVersion

RUNS = int(os.environ.get("TERTULIA_BENCH_WORKFLOWS_RUNS", "1000"))
POSTGRES_ADMIN = os.environ.get("TERTULIA_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
DATA = Path(__file__).resolve().parent.parent / "data" / "bench" / "workflows"
FLOW = {
    "trigger": {"type": "manual"},
    "steps": [
        {"id": "wait", "type": "wait", "config": {"duration": {"amount": 1, "unit": "minutes"}}, "next": "a"},
        {"id": "a", "type": "add_tags", "config": {"tags": ["bench-a"]}, "next": "b"},
        {"id": "b", "type": "add_tags", "config": {"tags": ["bench-b"]}},
    ],
}


def _database(kind: str) -> Database:
    if kind == "sqlite":
        DATA.mkdir(parents=True, exist_ok=True)
        path = DATA / "workflows.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        name = "tertulia_bench_workflows"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{name}"
    upgrade(url)
    return Database(url)


def run(kind: str) -> None:
    db = _database(kind)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "bench@example.com", "bench-password")
        actor = Actor.system(created.workspace.id)
        workflow = service.do_create_workflow(session, actor, "Bench", FLOW)
        service.do_publish(session, actor, workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        for index in range(RUNS):
            contact = Contact(workspace_id=created.workspace.id, first_name=f"C{index}", first_name_folded=f"c{index}")
            session.add(contact)
            session.flush()
            runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
    policy = runner.Policy(allow_private=False)
    runner.run_due(db, policy=policy, budget_seconds=600)  # every run to its wait
    moment = utcnow() + timedelta(minutes=2)
    started = time.perf_counter()
    runner.run_due(db, now=moment, policy=policy, budget_seconds=600)
    elapsed = time.perf_counter() - started
    with db.transaction(write=False) as session:
        finished = session.query(WorkflowRun).filter(WorkflowRun.status == "finished").count()
    print(
        f"{kind}: {finished}/{RUNS} runs resumed in {elapsed:.1f} s: {finished / elapsed:.0f} runs/s, "
        f"{3 * finished / elapsed:.0f} steps/s (one worker)",
        flush=True,
    )
    db.dispose()


def main() -> None:
    for kind in os.environ.get("TERTULIA_BENCH_WORKFLOWS_DBS", "sqlite,postgresql").split(","):
        run(kind.strip())
