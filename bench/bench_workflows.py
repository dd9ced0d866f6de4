"""Workflow runs under load: many runs resumed at one moment, and a steady stream of trigger events.

`python -m bench workflows`. Two measurements per database (TERTULIA_BENCH_WORKFLOWS_DBS, default
"sqlite,postgresql"):

Resume. A workspace with RUNS contacts (TERTULIA_BENCH_WORKFLOWS_RUNS, 10000), a published workflow
(wait 1 day, add a tag, add a second tag) and one run per contact, started and taken to its wait
(all waiting on the same resume time). Then WORKERS worker processes (TERTULIA_BENCH_WORKFLOWS_WORKERS,
default 2 on PostgreSQL and 1 on SQLite, whose writer is alone anyway) call `runner.run_due` at a
moment past the wait until nothing is due. Reported: seconds from the start signal until every run
finished, runs and steps (3 a run) per second, each worker's resident memory after its first second
and at its end and its peak, the CPU time each worker process used (its own Python work, not the
database's: a steadier figure than the time on a shared machine), and runs whose log shows a step
twice (must be 0). The baseline, in the
same run: BASELINE_RUNS runs (TERTULIA_BENCH_WORKFLOWS_BASELINE_RUNS, 1000) resumed by one worker
the way the runner did before batching (one transaction per run, `runner.process_run`).

Triggers. A published workflow triggered by the tag "go" whose first step adds a tag. This process
writes `contact.tagged` events at RATE a second (TERTULIA_BENCH_WORKFLOWS_RATE, 100) for SECONDS
(TERTULIA_BENCH_WORKFLOWS_SECONDS, 60; shorter for a quick run), each for another contact, and notes
when each committed. Two worker processes each loop over what the `workflows` event consumer and the
`workflows.advance` task run (the consumer's lease lets one of them feed it at a time), without the
job queue in between. Reported: runs started, and the latency from an event's commit to its run's
first step recorded (p50, p99, max). The baseline, in the same run when BASELINE_RUNS is not 0: the
same stream with the consumer taking one event per transaction (as before it took batches).
"""

import multiprocessing
import os
import resource
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select

from bench.databases import fresh_database_url
from tertulia.contacts.models import Contact
from tertulia.events import dispatcher
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor
from tertulia.workflows import repository as workflows_repo
from tertulia.workflows import runner, service, tasks, triggers
from tertulia.workflows.models import WorkflowEffect, WorkflowRun, WorkflowRunLog, WorkflowVersion

RUNS = int(os.environ.get("TERTULIA_BENCH_WORKFLOWS_RUNS", "10000"))
BASELINE_RUNS = int(os.environ.get("TERTULIA_BENCH_WORKFLOWS_BASELINE_RUNS", "1000"))
RATE = float(os.environ.get("TERTULIA_BENCH_WORKFLOWS_RATE", "100"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_WORKFLOWS_SECONDS", "60"))
# The SQLite page cache of each worker's connections, in KiB (the application's own setting when
# unset): a smaller one shows how much of a SQLite worker's growth in memory is that cache filling.
SQLITE_CACHE_KIB = os.environ.get("TERTULIA_BENCH_WORKFLOWS_SQLITE_CACHE_KIB")
STEPS_PER_RUN = 3
FLOW = {
    "trigger": {"type": "manual"},
    "steps": [
        # A day, not a minute: preparing many runs takes minutes, and no wait may end before the workers start.
        {"id": "wait", "type": "wait", "config": {"duration": {"amount": 1, "unit": "days"}}, "next": "a"},
        {"id": "a", "type": "add_tags", "config": {"tags": ["bench-a"]}, "next": "b"},
        {"id": "b", "type": "add_tags", "config": {"tags": ["bench-b"]}},
    ],
}
TRIGGERED = {
    "trigger": {"type": "tag_added", "config": {"tags": ["go"]}},
    "steps": [{"id": "first", "type": "add_tags", "config": {"tags": ["started"]}}],
}
POLICY = runner.Policy(allow_private=False)


def _rss_mb() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _workers(kind: str) -> int:
    return int(os.environ.get("TERTULIA_BENCH_WORKFLOWS_WORKERS", "2" if kind == "postgresql" else "1"))


# ----- resume ---------------------------------------------------------------------------------------


def _prepare_waiting_runs(url: str, count: int) -> None:
    """`count` runs of one workflow, each taken to its one-day wait."""
    db = Database(url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "bench@example.com", "bench-password")
        workspace_id = created.workspace.id
        actor = Actor.system(workspace_id)
        workflow = service.do_create_workflow(session, actor, "Bench", FLOW)
        service.do_publish(session, actor, workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        session.execute(
            insert(Contact),
            [{"workspace_id": workspace_id, "first_name": f"C{n}", "first_name_folded": f"c{n}"} for n in range(count)],
        )
        contact_ids = list(session.scalars(select(Contact.id).where(Contact.workspace_id == workspace_id)))
        for contact_id in contact_ids:
            runner.start_run(session, workflow, version, contact_id, {}, once_per_contact=False)
    with tasks.nudges_paused():
        runner.run_due(db, policy=POLICY, budget_seconds=3600)
    db.dispose()


def _resume_worker(url: str, moment: datetime, batched: bool, ready: Any, go: Any, results: Any) -> None:
    db = Database(url)
    if SQLITE_CACHE_KIB and db.dialect == "sqlite":
        kib = int(SQLITE_CACHE_KIB)

        @event.listens_for(db.engine, "connect")
        def smaller_cache(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA cache_size=-{kib}")

    queue.use_database(db)
    ready.set()
    go.wait()
    cpu_started = time.process_time()
    samples: list[float] = []
    turns = 0
    with tasks.nudges_paused():
        while True:
            if batched:
                taken = runner.run_due(db, now=moment, policy=POLICY, budget_seconds=1.0)
            else:
                taken = _unbatched(db, moment, budget_seconds=1.0)
            samples.append(_rss_mb())
            turns += taken
            if not taken:
                break
    results.put(
        {
            "turns": turns,
            "cpu_seconds": time.process_time() - cpu_started,
            "rss_first_mb": samples[0],
            "rss_last_mb": samples[-1],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    db.dispose()


def _unbatched(db: Database, moment: datetime, *, budget_seconds: float) -> int:
    """The runner before batching: due ids read in one transaction, then one transaction per run."""
    started = time.monotonic()
    turns = 0
    while time.monotonic() - started < budget_seconds:
        with db.transaction(write=False) as session:
            due = workflows_repo.due_run_ids(session, moment, 100)
        if not due:
            break
        for run_id in due:
            runner.process_run(db, run_id, now=moment, policy=POLICY)
            turns += 1
    return turns


def resume(kind: str, count: int, workers: int, *, batched: bool) -> str:
    url = fresh_database_url(kind, "workflows")
    _prepare_waiting_runs(url, count)
    moment = utcnow() + timedelta(days=2)
    context = multiprocessing.get_context("spawn")
    readiness = [context.Event() for _ in range(workers)]
    go = context.Event()
    results = context.Queue()
    processes = [
        context.Process(target=_resume_worker, args=(url, moment, batched, ready, go, results)) for ready in readiness
    ]
    for process in processes:
        process.start()
    for ready in readiness:  # a spawned process takes seconds to import the app; time starts after
        ready.wait(120)
    started = time.perf_counter()
    go.set()
    reports = [results.get(timeout=3600) for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    db = Database(url)
    with db.transaction(write=False) as session:
        finished = session.scalar(select(func.count()).where(WorkflowRun.status == "finished")) or 0
        logs_per_run = (
            select(WorkflowRunLog.run_id, WorkflowRunLog.step_id, func.count().label("n"))
            .group_by(WorkflowRunLog.run_id, WorkflowRunLog.step_id)
            .subquery()
        )
        twice = session.scalar(select(func.count()).select_from(logs_per_run).where(logs_per_run.c.n > 1)) or 0
    db.dispose()
    mode = "batched" if batched else "unbatched (one transaction per run)"
    memory = "; ".join(
        f"worker {n + 1}: {r['turns']} turns, CPU {r['cpu_seconds']:.2f} s, "
        f"RSS {r['rss_first_mb']:.0f} -> {r['rss_last_mb']:.0f} MB, "
        f"peak {r['peak_rss_mb']:.0f} MB"
        for n, r in enumerate(reports)
    )
    return (
        f"{kind} resume, {mode}, {workers} worker(s): {finished}/{count} runs resumed in {elapsed:.1f} s: "
        f"{finished / elapsed:.0f} runs/s, {STEPS_PER_RUN * finished / elapsed:.0f} steps/s; "
        f"steps logged twice: {twice}; {memory}"
    )


# ----- triggers -------------------------------------------------------------------------------------


def _trigger_worker(url: str, batched: bool, ready: Any, stop: Any) -> None:
    db = Database(url)
    consumer = triggers.CONSUMER
    if not batched:  # the baseline: each event in its own transaction
        consumer = dispatcher.Consumer(consumer.name, consumer.handle, consumer.types)
    queue.use_database(db)  # the consumer's handler writes through the tasks' database, as in a worker
    ready.set()
    with tasks.nudges_paused():
        while not stop.is_set():
            report = dispatcher.dispatch(db, [consumer], settle_wait=0.02)
            turns = runner.run_due(db, policy=POLICY, budget_seconds=0.5)
            if not turns and not report.delivered:
                time.sleep(0.005)
    db.dispose()


def trigger_latency(kind: str, *, batched: bool) -> str:
    url = fresh_database_url(kind, "workflows")
    db = Database(url)
    events = int(RATE * SECONDS)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "bench@example.com", "bench-password")
        workspace_id = created.workspace.id
        actor = Actor.system(workspace_id)
        workflow = service.do_create_workflow(session, actor, "Triggered", TRIGGERED)
        service.do_publish(session, actor, workflow)
        session.execute(
            insert(Contact),
            [{"workspace_id": workspace_id, "first_name": f"C{n}"} for n in range(events)],
        )
        contacts = list(session.scalars(select(Contact.id).where(Contact.workspace_id == workspace_id)))
    context = multiprocessing.get_context("spawn")
    readiness = [context.Event() for _ in range(2)]
    stop = context.Event()
    processes = [context.Process(target=_trigger_worker, args=(url, batched, ready, stop)) for ready in readiness]
    for process in processes:
        process.start()
    for ready in readiness:
        ready.wait(120)
    committed: dict[int, datetime] = {}  # contact id -> when its event committed
    seq = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < SECONDS:
        count = min(int(RATE * (now - start)) - seq, events - seq)
        if count > 0:
            batch = contacts[seq : seq + count]
            with db.transaction() as session:
                for contact_id in batch:
                    event_log.emit(
                        session,
                        event_log.Event(
                            EventType.CONTACT_TAGGED,
                            workspace_id,
                            {"contact_id": contact_id, "tag": "go"},
                            contact_id=contact_id,
                            actor="system",
                        ),
                    )
            at = utcnow()
            for contact_id in batch:
                committed[contact_id] = at
            seq += count
        time.sleep(0.01)
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        with db.transaction(write=False) as session:
            done = session.scalar(select(func.count()).select_from(WorkflowEffect)) or 0
        if done >= seq:
            break
        time.sleep(0.2)
    stop.set()
    for process in processes:
        process.join(30)
    with db.transaction(write=False) as session:
        firsts = session.execute(
            select(WorkflowRun.contact_id, func.min(WorkflowEffect.at))
            .join(WorkflowEffect, WorkflowEffect.run_id == WorkflowRun.id)
            .group_by(WorkflowRun.contact_id)
        ).all()
    db.dispose()
    latencies = sorted(
        max(0.0, (at.replace(tzinfo=None) - committed[c].replace(tzinfo=None)).total_seconds()) for c, at in firsts
    )
    if not latencies:
        return f"{kind} triggers: no run took its first step"
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    mode = "a read of the log per transaction" if batched else "one event per transaction"
    return (
        f"{kind} triggers, 2 workers, {mode}: {seq} events in {SECONDS:g} s ({seq / SECONDS:.0f}/s), "
        f"{len(latencies)} runs took their first step; event commit to first step: "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )


def main() -> None:
    for name in os.environ.get("TERTULIA_BENCH_WORKFLOWS_DBS", "sqlite,postgresql").split(","):
        kind = name.strip()
        if BASELINE_RUNS:
            print(resume(kind, BASELINE_RUNS, 1, batched=False), flush=True)
        print(resume(kind, RUNS, _workers(kind), batched=True), flush=True)
        if BASELINE_RUNS:
            print(trigger_latency(kind, batched=False), flush=True)
        print(trigger_latency(kind, batched=True), flush=True)


if __name__ == "__main__":
    main()
