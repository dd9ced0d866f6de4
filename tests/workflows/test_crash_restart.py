"""A random workflow fed a random sequence of events ends the same with and without crashes
injected between its steps: nothing is sent twice, nothing is skipped.

A crash is an exception raised at the runner's crash points (after an action was done, at the end
of a turn, after an HTTP request), which rolls back the turn's transaction as a killed process
would; "restarting" is calling the sweep again."""

import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Direction, Message
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.segments import repository as segments_repo
from tertulia.workflows import runner, service
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowRunLog, WorkflowVersion
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider
from tests.workflows.support import channel_on_fake, customer_writes


class Crash(Exception):
    pass


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[tuple[Channel, FakeProvider]]:
    with channel_on_fake(db, tenant) as found:
        queue.huey.immediate = False  # the test drives the consumer and the sweep itself
        try:
            yield found
        finally:
            queue.huey.immediate = True
            queue.huey.flush()


STEP_KINDS = ("send", "tag", "comment", "wait", "ask", "field", "hours", "queue")


def step(index: int, kind: str) -> dict[str, Any]:
    sid = f"s{index}"
    if kind == "send":
        return {"id": sid, "type": "send_message", "config": {"text": f'm{index} {{{{vars.a | "-"}}}}'}}
    if kind == "tag":
        return {"id": sid, "type": "add_tags", "config": {"tags": [f"t{index}"]}}
    if kind == "comment":
        return {"id": sid, "type": "add_comment", "config": {"text": f"c{index}"}}
    if kind == "wait":
        return {
            "id": sid,
            "type": "wait",
            "config": {"duration": {"amount": 1, "unit": "hours"}, "until_contact_writes": True},
        }
    if kind == "ask":
        config = {
            "text": f"q{index}",
            "kind": "number",
            "max_attempts": 2,
            "save_to": {"kind": "variable", "name": "a"},
        }
        return {"id": sid, "type": "ask_question", "config": {**config, "timeout": {"amount": 1, "unit": "hours"}}}
    if kind == "hours":  # every day, all day: always inside
        windows = [{"days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]}]
        config = {"mode": "weekly", "windows": [{**windows[0], "start": "00:00", "end": "24:00"}]}
        return {"id": sid, "type": "date_time", "config": config}
    if kind == "queue":  # nobody is online: the run waits in the queue until a tick times it out
        config = {"to": "workspace", "only_online": True, "queue_timeout": {"amount": 1, "unit": "hours"}}
        return {"id": sid, "type": "assign", "config": config}
    return {
        "id": sid,
        "type": "update_field",
        "config": {"field": "last_name", "value": f'L{index} {{{{vars.a | ""}}}}'},
    }


def definition(kinds: list[str], jump: bool) -> dict[str, Any]:
    steps = [step(i, kind) for i, kind in enumerate(kinds)]
    for current, following in itertools.pairwise(steps):
        current["next"] = following["id"]
    if jump:
        steps[-1]["next"] = "j"
        steps.append(
            {"id": "j", "type": "jump_to", "config": {"target": "s0", "max_jumps": 1, "when_exhausted": "exit"}}
        )
    raw = {"trigger": {"type": "manual"}, "steps": steps}
    if "ask" not in kinds:  # no step defines the variable: texts name a contact field instead
        raw = json.loads(json.dumps(raw).replace("vars.a", "contact.last_name"))
    return raw


counter = iter(range(1, 10_000_000))


def run_once(
    db: Database,
    tenant: Tenant,
    channel: Channel,
    raw: dict[str, Any],
    events: list[tuple[str, str]],
    crashes: set[int],
) -> Any:
    sender = f"p{next(counter)}"
    contact_id = customer_writes(db, channel, sender, "hola")
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), f"W {sender}", raw)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        run = runner.start_run(session, workflow, version, contact_id, {}, once_per_contact=False)
        assert run is not None
        run_id, workflow_id = run.id, workflow.id
    calls = raised = 0

    def crash_point(point: str) -> None:
        nonlocal calls, raised
        calls += 1
        if calls in crashes:
            raised += 1
            raise Crash(point)

    def sweep(now: Any) -> None:
        runner.crash_point = crash_point
        try:
            for _ in range(100):
                try:
                    runner.run_due(db, now=now, policy=runner.Policy(allow_private=True))
                    return
                except Crash:
                    continue  # the process died; another one sweeps
        finally:
            runner.crash_point = None

    base = utcnow() + timedelta(minutes=1)
    sweep(base)
    for index, (kind, text) in enumerate(events):
        moment = base + timedelta(hours=2 * index + 1)
        if kind == "write":
            with db.transaction() as session:
                runner.contact_wrote(session, tenant.workspace_id, contact_id, text, moment, 10_000_000 + index)
            sweep(moment)
        else:
            sweep(moment + timedelta(hours=1, minutes=1))
    with db.transaction(write=False) as session:
        texts = list(
            session.execute(
                select(Message.direction, Message.text)
                .where(Message.contact_id == contact_id, Message.direction != Direction.INCOMING)
                .where(Message.direction.in_((Direction.OUTGOING, Direction.COMMENT)))
                .order_by(Message.id)
            )
        )
        contact = session.get(Contact, contact_id)
        assert contact is not None
        stored = session.get(WorkflowRun, run_id)
        assert stored is not None
        log_rows = session.scalars(
            select(WorkflowRunLog).where(WorkflowRunLog.run_id == run_id).order_by(WorkflowRunLog.id)
        )
        return {
            "messages": [(str(d), t) for d, t in texts],
            "tags": sorted(segments_repo.contact_tag_keys(session, contact_id)),
            "last_name": contact.last_name,
            "status": stored.status,
            "vars": stored.state.get("vars"),
            "path": stored.state.get("path"),
            "logs": [(row.step_id, row.outcome) for row in log_rows],
            "workflow": session.get(Workflow, workflow_id) is not None,
        }, raised


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(
    kinds=st.lists(st.sampled_from(STEP_KINDS), min_size=1, max_size=6),
    jump=st.booleans(),
    events=st.lists(st.tuples(st.sampled_from(["write", "tick"]), st.sampled_from(["2", "x", "7"])), max_size=5),
    crashes=st.sets(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
)
def test_crashes_between_steps_change_nothing(
    db: Database,
    tenant: Tenant,
    channel: tuple[Channel, FakeProvider],
    kinds: list[str],
    jump: bool,
    events: list[tuple[str, str]],
    crashes: set[int],
) -> None:
    raw = definition(kinds, jump)
    clean, _ = run_once(db, tenant, channel[0], raw, events, set())
    crashed, raised = run_once(db, tenant, channel[0], raw, events, crashes | {1})
    assert raised >= 1  # the first turn of every run passes a crash point
    assert crashed == clean
