"""A random workflow fed a random sequence of events ends the same with and without crashes
injected between its steps: nothing is sent twice, nothing is skipped.

A crash is an exception raised at the runner's crash points (after an action was done, at the end
of a turn, after an HTTP request), which rolls back the turn's transaction as a killed process
would; "restarting" is calling the sweep again.

The workflows take branches (on a tag, a contact field the steps write, the answer to a question,
an HTTP status or response value: the events decide which way) and make HTTP requests to a real
local server, allowed as the workspace's listed host. What the server received is part of the
outcome. The runner's promise for a request (runner.py, docs/workflows.md) is at least once under
one `Idempotency-Key`: a crash after the request and before its result is recorded sends it again,
with the same key, once the request's lease has passed. So the server sees the same requests, each
key first in the same order, with the same method, path and body; a key arrives once more for
each crash raised after its request, and never otherwise. The server honours the key (a repeat
gets the first answer), as the promise asks of a receiver."""

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from tertulia.workflows import http_hosts, runner, service
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowRunLog, WorkflowVersion
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider
from tests.workflows.support import channel_on_fake, customer_writes


class Crash(Exception):
    pass


@dataclass
class Arrival:
    key: str
    method: str
    path: str
    body: Any


@dataclass
class Server:
    """A local HTTP server that answers by path and honours `Idempotency-Key` (a repeated key gets
    its first answer): `/ok` 200, `/maybe` 200 unless the body's `a` is "7" (409), `/fail` 503."""

    url: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, arrival: Arrival) -> tuple[int, bytes]:
        with self.lock:
            self.arrivals.append(arrival)
            if arrival.key not in self.answers:
                a = str((arrival.body or {}).get("a"))
                if arrival.path == "/fail" or (arrival.path == "/maybe" and a == "7"):
                    self.answers[arrival.key] = (503 if arrival.path == "/fail" else 409, b'{"error": "no"}')
                else:
                    echo = f"{arrival.path[1:]}:{a}:{(arrival.body or {}).get('n')}"
                    self.answers[arrival.key] = (200, json.dumps({"data": {"echo": echo}}).encode())
            return self.answers[arrival.key]

    def since(self, mark: int) -> list[Arrival]:
        with self.lock:
            return self.arrivals[mark:]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            arrival = Arrival(self.headers.get("idempotency-key", ""), "POST", self.path, json.loads(raw or b"null"))
            status, reply = state.answer(arrival)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[tuple[Channel, FakeProvider]]:
    with db.transaction() as session:
        # The local server is reached as a listed host of the workspace, not by a policy for all.
        http_hosts.do_set_http_hosts(session, tenant.actor(), ["127.0.0.1"])
    with channel_on_fake(db, tenant) as found:
        queue.huey.immediate = False  # the test drives the consumer and the sweep itself
        try:
            yield found
        finally:
            queue.huey.immediate = True
            queue.huey.flush()


STEP_KINDS = ("send", "tag", "comment", "wait", "ask", "field", "hours", "queue", "branch", "http")
HTTP_PATHS = ("ok", "maybe", "fail")
HTTP_TIMEOUT = 5
# How far a restart after a crash past an HTTP request comes back: once the request's lease is over.
LEASE = timedelta(seconds=HTTP_TIMEOUT + 1) + runner.LEASE_MARGIN


@dataclass(frozen=True)
class Plan:
    """One step of a generated workflow: its kind, a choice among that kind's variants (a branch's
    condition, an HTTP request's path) and where a branch or a failure goes (counted forward)."""

    kind: str
    choice: int
    target: int


NEGATED = {"contains": "not_contains", "has_any_of": "has_none_of", "gt": "lte", "eq": "neq"}


def conditions(choice: int, plans: list[Plan]) -> dict[str, Any]:
    """A branch's conditions, on something the events or the steps change, or its negation."""
    kinds = {plan.kind for plan in plans}
    tags = [f"t{i}" for i, plan in enumerate(plans) if plan.kind == "tag"]
    options: list[dict[str, Any]] = [
        {"category": "contact_field", "field": "last_name", "operator": "contains", "value": "7"},
    ]
    if tags:
        options.append({"category": "tag", "operator": "has_any_of", "value": [tags[choice % len(tags)]]})
    if "ask" in kinds:
        options.append({"category": "variable", "field": "a", "operator": "gt", "value": 5})
    if "http" in kinds:
        options.append({"category": "variable", "field": "code", "operator": "eq", "value": 200})
        options.append({"category": "variable", "field": "resp", "operator": "contains", "value": ":7"})
    condition = dict(options[choice % len(options)])
    if choice // len(options) % 2:
        condition["operator"] = NEGATED[condition["operator"]]
    return {"groups": [{"conditions": [condition]}]}


def forward(index: int, target: int, ids: list[str]) -> str | None:
    """A step after `index` (or the end of the run): no loop but the jump step's."""
    later = [*ids[index + 1 :], None]
    return later[target % len(later)]


def step(index: int, plan: Plan, plans: list[Plan], ids: list[str], url: str) -> dict[str, Any]:
    sid, kind = f"s{index}", plan.kind
    if kind == "send":
        return {
            "id": sid,
            "type": "send_message",
            "config": {"text": f'm{index} {{{{vars.a | "-"}}}} {{{{vars.resp | "-"}}}}'},
        }
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
    if kind == "branch":
        branch = {"name": "b", "conditions": conditions(plan.choice, plans), "next": forward(index, plan.target, ids)}
        return {"id": sid, "type": "branch", "config": {"branches": [branch]}}
    if kind == "http":
        http: dict[str, Any] = {
            "id": sid,
            "type": "http_request",
            "config": {
                "url": f"{url}/{HTTP_PATHS[plan.choice % len(HTTP_PATHS)]}",
                "body": f'{{"a": "{{{{vars.a | ""}}}}", "n": "{{{{contact.last_name | ""}}}}", "step": {index}}}',
                "timeout_seconds": HTTP_TIMEOUT,
                "response": [{"path": "$.data.echo", "variable": "resp"}],
                "status_variable": "code",
            },
        }
        # Sometimes no failure branch: a failed request then ends the run as failed.
        failure = forward(index, plan.target, ids)
        if plan.target % 3 and failure is not None:
            http["on"] = {"failure": failure}
        return http
    return {
        "id": sid,
        "type": "update_field",
        "config": {"field": "last_name", "value": f'L{index} {{{{vars.a | ""}}}}'},
    }


def definition(plans: list[Plan], jump: bool, url: str) -> dict[str, Any]:
    ids = [f"s{i}" for i in range(len(plans))] + (["j"] if jump else [])
    steps = [step(i, plan, plans, ids, url) for i, plan in enumerate(plans)]
    for current, following in itertools.pairwise(steps):
        current["next"] = following["id"]
    if jump:
        steps[-1]["next"] = "j"
        steps.append(
            {"id": "j", "type": "jump_to", "config": {"target": "s0", "max_jumps": 1, "when_exhausted": "exit"}}
        )
    raw = {"trigger": {"type": "manual"}, "steps": steps}
    kinds = {plan.kind for plan in plans}
    text = json.dumps(raw)
    if "ask" not in kinds:  # no step defines the variable: texts name a contact field instead
        text = text.replace("vars.a", "contact.last_name")
    if "http" not in kinds:
        text = text.replace("vars.resp", "contact.first_name")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# Where each event's sweep happens: a write 20 minutes into its two hours, a tick 100 minutes in.
# Every gap between two sweeps is then at least 20 minutes away from the hour that waits, question
# timeouts and the queue's timeout last, so restarting an HTTP request after its lease (about a
# minute per crash, a few at most) never moves a wait's end across a sweep.
OFFSETS = {"write": timedelta(minutes=20), "tick": timedelta(minutes=100)}

counter = iter(range(1, 10_000_000))


def run_once(
    db: Database,
    tenant: Tenant,
    channel: Channel,
    server: Server,
    raw: dict[str, Any],
    events: list[tuple[str, str]],
    crashes: set[int],
) -> tuple[dict[str, Any], list[str]]:
    """The run's outcome, and the crash points raised (in order)."""
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
    mark = len(server.since(0))
    calls = 0
    raised: list[str] = []

    def crash_point(point: str) -> None:
        nonlocal calls
        calls += 1
        if calls in crashes:
            raised.append(point)
            raise Crash(point)

    def sweep(now: Any) -> None:
        runner.crash_point = crash_point
        try:
            for _ in range(100):
                try:
                    runner.run_due(db, now=now, policy=runner.Policy(allow_private=False))
                    return
                except Crash as crash:
                    # The process died; another one sweeps. A request made but not recorded is
                    # leased until its timeout has passed: the restart that sends it again comes
                    # then (an earlier one finds the run not due).
                    if crash.args[0] == "after_http":
                        now = now + LEASE
        finally:
            runner.crash_point = None

    base = utcnow() + timedelta(minutes=1)
    sweep(base)
    for index, (kind, text) in enumerate(events):
        moment = base + timedelta(hours=2 * index) + OFFSETS[kind]
        if kind == "write":
            with db.transaction() as session:
                runner.contact_wrote(session, tenant.workspace_id, contact_id, text, moment, 10_000_000 + index)
        sweep(moment)
    prefix = f"wfrun-{run_id}-"
    arrivals = server.since(mark)
    assert all(arrival.key.startswith(prefix) for arrival in arrivals)
    requests: dict[str, tuple[str, str, Any]] = {}
    for arrival in arrivals:
        seen = requests.setdefault(arrival.key, (arrival.method, arrival.path, arrival.body))
        assert seen == (arrival.method, arrival.path, arrival.body)  # a repeat is the same request
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
        outcome = {
            "messages": [(str(d), t) for d, t in texts],
            "tags": sorted(segments_repo.contact_tag_keys(session, contact_id)),
            "last_name": contact.last_name,
            "status": stored.status,
            "vars": stored.state.get("vars"),
            "path": stored.state.get("path"),
            "logs": [(row.step_id, row.outcome) for row in log_rows],
            "workflow": session.get(Workflow, workflow_id) is not None,
            # Each request the server got, by its key without the run's id, in the order of its first arrival.
            "requests": [(key.removeprefix(prefix), *request) for key, request in requests.items()],
            # Arrivals beyond the first of each key: the repeats the promise allows.
            "repeats": len(arrivals) - len(requests),
        }
    with db.transaction() as session:
        # A run left waiting would go on in the next example's sweeps (they pass its due time):
        # each example's sweeps then turn its own runs alone.
        service.do_stop(session, tenant.actor(), service.access_workflow(session, tenant.actor(), workflow_id))
    return outcome, raised


PLANS = st.builds(
    Plan,
    # Branches and HTTP requests twice as often as the others: they are what crashes test least.
    kind=st.sampled_from((*STEP_KINDS, "branch", "http")),
    choice=st.integers(min_value=0, max_value=11),
    target=st.integers(min_value=0, max_value=5),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(
    plans=st.lists(PLANS, min_size=2, max_size=7),
    jump=st.booleans(),
    events=st.lists(st.tuples(st.sampled_from(["write", "tick"]), st.sampled_from(["2", "x", "7"])), max_size=5),
    crashes=st.sets(st.integers(min_value=1, max_value=20), min_size=1, max_size=6),
)
def test_crashes_between_steps_change_nothing(
    db: Database,
    tenant: Tenant,
    channel: tuple[Channel, FakeProvider],
    server: Server,
    plans: list[Plan],
    jump: bool,
    events: list[tuple[str, str]],
    crashes: set[int],
) -> None:
    raw = definition(plans, jump, server.url)
    clean, none = run_once(db, tenant, channel[0], server, raw, events, set())
    crashed, raised = run_once(db, tenant, channel[0], server, raw, events, crashes | {1})
    assert none == []
    assert raised  # the first turn of every run passes a crash point
    assert clean["repeats"] == 0  # without a crash, every request arrives once
    # With crashes: one more arrival of a request for each crash between it and its record, no other.
    assert crashed.pop("repeats") == raised.count("after_http")
    clean.pop("repeats")
    assert crashed == clean
