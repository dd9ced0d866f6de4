"""The assignment queue of workflows: what a wake costs, and draining it, with N runs waiting.

`python -m bench workflow_queue`. For each database (TERTULIA_BENCH_QUEUE_DBS, default
"sqlite,postgresql") and each size N (TERTULIA_BENCH_QUEUE_SIZES, default "1000,5000,10000"): a
workspace whose published workflow assigns the contact's open conversation to anyone online, with
a queue timeout of 7 days, and N contacts with an open conversation and a run waiting in the queue
(nobody is online). One run is taken there by the runner; the others are copies of its state and
queue row, each joining a millisecond later (written in bulk: the bench measures the queue, not
how runs reach it). One process, as the worker does: the `workflows` event consumer, then
`runner.run_due`.

- Wake, nobody free: `queue.wake` for the workspace (what the consumer does after
  `conversation.closed`, an agent coming online, ...), then `run_due` until nothing is due; nobody
  qualifies yet. WAKES times (TERTULIA_BENCH_QUEUE_WAKES, 3); reported: the mean seconds and
  turns a wake.
- Drain: the owner comes online (an event in the log), then consumer and `run_due` (budget 0.5 s)
  take turns until the queue is empty, as a worker loop does; every assignment is itself an event
  that the consumer reads. Reported: seconds until every conversation was assigned, turns taken,
  whether the assignments followed the queue's order, and conversations assigned more than once
  (must be 0). Stops after TERTULIA_BENCH_QUEUE_DRAIN_SECONDS (600) and says so.
- One place at a time: the same N runs waiting, the step assigning at most one open conversation
  to each person; PLACES agents (TERTULIA_BENCH_QUEUE_PLACES, 3; 0 skips this) come online one
  after the other, each freeing exactly one place (as an agent closing a conversation does); the
  consumer and `run_due` run after each, twice (the agent's event, then the assignment's).
  Reported: the mean seconds and turns a place. Draining a queue this way takes N places.
"""

import os
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from bench.databases import fresh_database_url
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation, ConversationStatus
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit import queue as job_queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role, User
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user, do_set_activity_status
from tertulia.workflows import queue, runner, service, tasks, triggers
from tertulia.workflows.models import WorkflowEffect, WorkflowQueueEntry, WorkflowRun, WorkflowVersion

SIZES = [int(n) for n in os.environ.get("TERTULIA_BENCH_QUEUE_SIZES", "1000,5000,10000").split(",")]
WAKES = int(os.environ.get("TERTULIA_BENCH_QUEUE_WAKES", "3"))
PLACES = int(os.environ.get("TERTULIA_BENCH_QUEUE_PLACES", "3"))
DRAIN_SECONDS = float(os.environ.get("TERTULIA_BENCH_QUEUE_DRAIN_SECONDS", "600"))


def _flow(max_open: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {"to": "workspace", "only_online": True, "queue_timeout": {"amount": 7, "unit": "days"}}
    if max_open is not None:
        config["max_open"] = max_open
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "a", "type": "assign", "config": config, "next": "done"},
            {"id": "done", "type": "add_tags", "config": {"tags": ["assigned"]}},
        ],
    }


POLICY = runner.Policy(allow_private=False)


def _prepare(url: str, count: int, *, one_each: bool = False) -> tuple[int, int]:
    """`count` runs waiting in the queue, oldest first by run id; (workspace id, owner id).
    `one_each`: the step assigns at most one open conversation to each person (`max_open` 1)."""
    db = Database(url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "bench@example.com", "bench-password")
        workspace_id, owner_id = created.workspace.id, created.owner.id
        actor = Actor.system(workspace_id)
        workflow = service.do_create_workflow(session, actor, "Queue", _flow(1 if one_each else None))
        service.do_publish(session, actor, workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        session.execute(
            insert(Contact),
            [{"workspace_id": workspace_id, "first_name": f"C{n}", "first_name_folded": f"c{n}"} for n in range(count)],
        )
        contact_ids = sorted(session.scalars(select(Contact.id).where(Contact.workspace_id == workspace_id)))
        session.execute(
            insert(Conversation),
            [{"workspace_id": workspace_id, "contact_id": c, "status": ConversationStatus.OPEN} for c in contact_ids],
        )
        first = runner.start_run(session, workflow, version, contact_ids[0], {}, once_per_contact=False)
        assert first is not None
        first_id = first.id
    with tasks.nudges_paused():
        runner.run_due(db, policy=POLICY, budget_seconds=60)
    with db.transaction() as session:
        run = session.get(WorkflowRun, first_id)
        entry = session.scalar(select(WorkflowQueueEntry).where(WorkflowQueueEntry.run_id == first_id))
        assert run is not None
        assert entry is not None, "the first run did not reach the queue"
        rows: list[dict[str, Any]] = []
        for n, contact_id in enumerate(contact_ids[1:], start=1):
            since = entry.queued_at + timedelta(milliseconds=n)
            state = {**run.state, "wait": {**run.state["wait"], "since": since.isoformat()}}
            rows.append(
                {
                    "workspace_id": workspace_id,
                    "workflow_id": run.workflow_id,
                    "version_id": run.version_id,
                    "contact_id": contact_id,
                    "active_contact_id": contact_id,
                    "status": run.status,
                    "state": state,
                    "inbox": [],
                    "due_at": run.due_at,
                    "last_event_id": 0,
                    "steps": run.steps,
                    "started_at": run.started_at,
                    "updated_at": run.updated_at,
                }
            )
        session.execute(insert(WorkflowRun), rows)
        copies = session.execute(
            select(WorkflowRun.id, WorkflowRun.state).where(
                WorkflowRun.workflow_id == run.workflow_id, WorkflowRun.id != first_id
            )
        ).all()
        session.execute(
            insert(WorkflowQueueEntry),
            [
                {
                    "workspace_id": workspace_id,
                    "run_id": run_id,
                    "step_id": entry.step_id,
                    "pool": entry.pool,
                    "queued_at": datetime.fromisoformat(state["wait"]["since"]),
                    "attempted_at": entry.attempted_at,
                }
                for run_id, state in copies
            ],
        )
    with db.transaction(write=False) as session:
        waiting = session.scalar(select(func.count()).select_from(WorkflowQueueEntry)) or 0
    assert waiting == count, f"{waiting} runs wait, not {count}"
    # The consumer starts after the preparation's events.
    dispatcher.dispatch(db, [triggers.CONSUMER])
    db.dispose()
    return workspace_id, owner_id


def _run_due_until_idle(db: Database) -> int:
    turns = 0
    while taken := runner.run_due(db, policy=POLICY, budget_seconds=5.0):
        turns += taken
    return turns


def measure_places(kind: str, count: int) -> str:
    """PLACES agents (max one open conversation each) come online one after the other: each frees
    exactly one place, as an agent closing a conversation does."""
    url = fresh_database_url(kind, "workflow_queue")
    workspace_id, _owner_id = _prepare(url, count, one_each=True)
    db = Database(url)
    job_queue.use_database(db)
    with db.transaction() as session:
        agents = []
        for n in range(PLACES):
            agent = do_create_user(session, f"agent{n}@example.com", "agent-password")
            do_add_member(session, workspace_id, agent.id, Role.AGENT)
            agents.append(agent.id)
    dispatcher.dispatch(db, [triggers.CONSUMER], settle_wait=0.0)
    turns = 0
    started = time.perf_counter()
    with tasks.nudges_paused():
        for agent_id in agents:
            with db.transaction() as session:
                agent = session.get(User, agent_id)
                assert agent is not None
                do_set_activity_status(session, agent, "online")
            for _ in range(2):  # the agent's event, then the assignment's own event
                dispatcher.dispatch(db, [triggers.CONSUMER], settle_wait=0.0)
                turns += _run_due_until_idle(db)
    elapsed = time.perf_counter() - started
    with db.transaction(write=False) as session:
        waiting = session.scalar(select(func.count()).select_from(WorkflowQueueEntry)) or 0
    db.dispose()
    return (
        f"  one place at a time: {elapsed / PLACES * 1000:.0f} ms and {turns / PLACES:.0f} turns a place "
        f"(mean of {PLACES}); assigned {count - waiting} of {PLACES} places"
    )


def measure(kind: str, count: int) -> list[str]:
    url = fresh_database_url(kind, "workflow_queue")
    started = time.perf_counter()
    workspace_id, owner_id = _prepare(url, count)
    prepared = time.perf_counter() - started
    db = Database(url)
    job_queue.use_database(db)
    lines = [f"{kind}, {count} runs waiting (prepared in {prepared:.1f} s)"]
    with tasks.nudges_paused():
        seconds: list[float] = []
        turns: list[int] = []
        for _ in range(WAKES):
            started = time.perf_counter()
            with db.transaction() as session:
                queue.wake(session, workspace_id)
            turns.append(_run_due_until_idle(db))
            seconds.append(time.perf_counter() - started)
        with db.transaction(write=False) as session:
            waiting = session.scalar(select(func.count()).select_from(WorkflowQueueEntry)) or 0
        if WAKES:
            lines.append(
                f"  wake, nobody free: {sum(seconds) / WAKES * 1000:.0f} ms and {sum(turns) / WAKES:.0f} turns "
                f"a wake (mean of {WAKES}); still waiting: {waiting}"
            )

        with db.transaction() as session:
            owner = session.get(User, owner_id)
            assert owner is not None
            do_set_activity_status(session, owner, "online")
        started = time.perf_counter()
        drain_turns = 0
        while True:
            dispatcher.dispatch(db, [triggers.CONSUMER], settle_wait=0.0)
            drain_turns += runner.run_due(db, policy=POLICY, budget_seconds=0.5)
            with db.transaction(write=False) as session:
                waiting = session.scalar(select(func.count()).select_from(WorkflowQueueEntry)) or 0
            if not waiting or time.perf_counter() - started > DRAIN_SECONDS:
                break
        elapsed = time.perf_counter() - started
    with db.transaction(write=False) as session:
        queued_order = [
            run_id
            for (run_id,) in session.execute(
                select(WorkflowRun.id).where(WorkflowRun.workspace_id == workspace_id).order_by(WorkflowRun.id)
            )
        ]
        assigned_order = list(
            session.scalars(
                select(WorkflowEffect.run_id)
                .where(WorkflowEffect.kind == "assign", WorkflowEffect.ok.is_(True))
                .order_by(WorkflowEffect.id)
            )
        )
        per_conversation = (
            select(EventRecord.contact_id, func.count().label("n"))
            .where(EventRecord.type == EventType.CONVERSATION_ASSIGNED)
            .group_by(EventRecord.contact_id)
            .subquery()
        )
        twice = session.scalar(select(func.count()).select_from(per_conversation).where(per_conversation.c.n > 1))
    db.dispose()
    finished = "" if not waiting else f" STOPPED after {DRAIN_SECONDS:g} s with {waiting} still waiting;"
    in_order = assigned_order == queued_order[: len(assigned_order)]
    lines.append(
        f"  drain:{finished} {len(assigned_order)}/{count} assigned in {elapsed:.1f} s "
        f"({len(assigned_order) / elapsed:.0f}/s), {drain_turns} turns; in queue order: {in_order}; "
        f"assigned twice: {twice or 0}"
    )
    return lines


def main() -> None:
    started = utcnow()
    for name in os.environ.get("TERTULIA_BENCH_QUEUE_DBS", "sqlite,postgresql").split(","):
        for count in SIZES:
            for line in measure(name.strip(), count):
                print(line, flush=True)
            if PLACES:
                print(measure_places(name.strip(), count), flush=True)
    print(f"started {started:%Y-%m-%d %H:%M} UTC, ended {utcnow():%H:%M} UTC, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
