"""Due runs and trigger events are handled optimistically first (no savepoint per run, tags read
once a batch, rows written in one flush) and the careful way when anything raises. Both ways must
end the same: the same tags, fields, logs, effects, activity and events, whatever the flow and
whatever the contacts answer. A tag added by someone else while a batch runs makes its flush fail
and the batch fall back, and the tag is not added twice; a trigger event fed twice whose run has
ended falls back too and starts nothing twice. And the optimistic way is what makes it cheap: a
batch costs a few statements, not several per run."""

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, text, update

from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact, ContactActivity
from tertulia.events import dispatcher
from tertulia.events.models import ConsumerPosition, EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.segments import repository as segments_repo
from tertulia.workflows import runner, service
from tertulia.workflows.models import WorkflowEffect, WorkflowRun, WorkflowRunLog, WorkflowVersion
from tertulia.workflows.triggers import CONSUMER
from tests.conftest import Tenant
from tests.workflows.support import customer_writes, dispatch, publish

pytestmark = pytest.mark.usefixtures("no_background_work")

POLICY = runner.Policy(allow_private=True)
STEP_KINDS = ("tag", "untag", "field", "ask", "wait")
numbers = itertools.count(1)


@pytest.fixture
def optimistic() -> Iterator[None]:
    yield
    runner.OPTIMISTIC_BATCHES = True


def step(index: int, kind: str) -> dict[str, Any]:
    sid = f"s{index}"
    if kind == "tag":
        return {"id": sid, "type": "add_tags", "config": {"tags": [f"t{index % 3}", "common"]}}
    if kind == "untag":
        return {"id": sid, "type": "remove_tags", "config": {"tags": [f"t{(index + 1) % 3}", "common"]}}
    if kind == "field":
        return {"id": sid, "type": "update_field", "config": {"field": "last_name", "value": f"L{index}"}}
    if kind == "ask":
        config = {"text": f"q{index}", "kind": "choice", "options": ["vip", "Nuevo"], "save_to": {"kind": "tag"}}
        return {"id": sid, "type": "ask_question", "config": {**config, "timeout": {"amount": 1, "unit": "hours"}}}
    return {"id": sid, "type": "wait", "config": {"duration": {"amount": 1, "unit": "hours"}}}


def flow(kinds: list[str]) -> dict[str, Any]:
    steps = [step(i, kind) for i, kind in enumerate(kinds)]
    for current, following in itertools.pairwise(steps):
        current["next"] = following["id"]
    return {"trigger": {"type": "manual"}, "steps": steps}


def run_world(
    db: Database, tenant: Tenant, channel: Channel, raw: dict[str, Any], answers: list[list[str]], *, fast: bool
) -> list[dict[str, Any]]:
    """A run of `raw` for each list of answers (one contact each), all in the same batches; what
    each run did, without ids."""
    runner.OPTIMISTIC_BATCHES = fast
    contact_ids = [customer_writes(db, channel, f"+5255{next(numbers):08d}", "hola") for _ in answers]
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), f"W{next(numbers)}", raw)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        run_ids = []
        for contact_id in contact_ids:
            run = runner.start_run(session, workflow, version, contact_id, {}, once_per_contact=False)
            assert run is not None
            run_ids.append(run.id)
    base = utcnow() + timedelta(minutes=1)
    runner.run_due(db, now=base, policy=POLICY)
    for turn in range(max(len(a) for a in answers)):
        moment = base + timedelta(hours=2 * turn + 1)
        with db.transaction() as session:
            for contact_id, said in zip(contact_ids, answers, strict=True):
                if turn < len(said):
                    runner.contact_wrote(session, tenant.workspace_id, contact_id, said[turn], moment, 10**9 + turn)
        runner.run_due(db, now=moment, policy=POLICY)
        runner.run_due(db, now=moment + timedelta(hours=1, minutes=1), policy=POLICY)  # waits and timeouts end
    return [outcome(db, run_id, contact_id) for run_id, contact_id in zip(run_ids, contact_ids, strict=True)]


def outcome(db: Database, run_id: int, contact_id: int) -> dict[str, Any]:
    with db.transaction(write=False) as session:
        run = session.get(WorkflowRun, run_id)
        contact = session.get(Contact, contact_id)
        assert run is not None
        assert contact is not None
        logs = session.scalars(
            select(WorkflowRunLog).where(WorkflowRunLog.run_id == run_id).order_by(WorkflowRunLog.id)
        )
        effects = session.scalars(
            select(WorkflowEffect).where(WorkflowEffect.run_id == run_id).order_by(WorkflowEffect.id)
        )
        activity = session.scalars(
            select(ContactActivity).where(ContactActivity.contact_id == contact_id).order_by(ContactActivity.id)
        )
        events = session.scalars(
            select(EventRecord)
            .where(EventRecord.contact_id == contact_id, EventRecord.type.like("contact.%"))
            .order_by(EventRecord.id)
        )
        return {
            "status": run.status,
            "state": {k: v for k, v in run.state.items() if k not in ("wait", "window_start")},
            "tags": sorted(segments_repo.contact_tag_keys(session, contact_id)),
            "last_name": contact.last_name,
            "logs": [(row.step_id, row.outcome, row.error) for row in logs],
            "effects": [
                (row.key, row.kind, row.ok, {k: v for k, v in row.result.items() if k != "message_id"})
                for row in effects
            ],
            "activity": [
                (row.action, row.field, row.old_value, row.new_value)
                for row in activity
                if row.action in ("tag_added", "tag_removed", "updated")
            ],
            "events": [(row.type, {k: v for k, v in row.payload.items() if k != "contact_id"}) for row in events],
        }


# No shrinking: each example runs two worlds of runs against the database; a failure shows its
# example as drawn.
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)
@given(
    kinds=st.lists(st.sampled_from(STEP_KINDS), min_size=1, max_size=6),
    answers=st.lists(st.lists(st.sampled_from(["vip", "Nuevo", "otra"]), max_size=3), min_size=2, max_size=4),
)
def test_optimistic_and_careful_batches_end_the_same(
    db: Database, tenant: Tenant, channel: Channel, optimistic: None, kinds: list[str], answers: list[list[str]]
) -> None:
    raw = flow(kinds)
    careful = run_world(db, tenant, channel, raw, answers, fast=False)
    fast = run_world(db, tenant, channel, raw, answers, fast=True)
    assert fast == careful


def test_a_tag_added_meanwhile_sends_the_batch_the_careful_way(
    db: Database, tenant: Tenant, channel: Channel, optimistic: None
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing is added while a batch runs")
    raw = flow(["wait", "tag"])  # adds t1 and common
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), "Meanwhile", raw)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        contacts_service.ensure_tags(session, tenant.workspace_id, ["t1", "common"])
        contacts = [Contact(workspace_id=tenant.workspace_id, first_name=f"C{n}") for n in range(3)]
        session.add_all(contacts)
        session.flush()
        contact_ids = [contact.id for contact in contacts]
        for contact in contacts:
            assert runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
    runner.run_due(db, policy=POLICY)  # each run to its wait
    # Someone tags the second contact "common" and has not committed yet: the batch reads the
    # contact's tags without it, and its one flush waits on that row, then fails once it commits.
    other = db.session()
    contact = other.get(Contact, contact_ids[1])
    assert contact is not None
    contacts_service.do_add_tags(other, tenant.actor(), contact, ["common"])
    done: list[int] = []
    worker = threading.Thread(
        target=lambda: done.append(runner.run_due(db, now=utcnow() + timedelta(hours=2), policy=POLICY))
    )
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not waiting_on_a_lock(db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting_on_a_lock(db)
    finally:
        other.commit()
        other.close()
    worker.join(60)
    assert done == [3]
    with db.transaction(write=False) as session:
        tags = {c: sorted(segments_repo.contact_tag_keys(session, c)) for c in contact_ids}
        activity = session.execute(
            select(ContactActivity.contact_id, ContactActivity.new_value).where(ContactActivity.action == "tag_added")
        ).all()
        added = [contact_id for contact_id, value in activity if value == "common"]
        effects = session.scalars(select(WorkflowEffect).order_by(WorkflowEffect.id)).all()
    assert all(found == ["common", "t1"] for found in tags.values())
    assert sorted(added) == contact_ids  # once each: the second contact's by the other transaction
    assert [e.result["tags"] for e in effects] == [["t1", "common"], ["t1"], ["t1", "common"]]


def waiting_on_a_lock(db: Database) -> bool:
    with db.transaction(write=False) as session:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return bool(session.scalar(text(query)))


def test_a_batch_costs_a_few_statements_not_several_per_run(db: Database, tenant: Tenant) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite inserts rows with one statement each (and in process)")
    raw = flow(["wait", "tag", "tag"])
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), "Cheap", raw)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        contacts_service.ensure_tags(session, tenant.workspace_id, ["t1", "t0", "t2", "common"])
        contacts = [Contact(workspace_id=tenant.workspace_id, first_name=f"C{n}") for n in range(20)]
        session.add_all(contacts)
        session.flush()
        for contact in contacts:
            assert runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
    runner.run_due(db, policy=POLICY)  # each run to its wait
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert runner.run_due(db, now=utcnow() + timedelta(hours=2), policy=POLICY, batch_size=50) == 20
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    # 20 runs of two tag steps in one batch: the careful way takes about 18 statements a run.
    assert statements < 2 * 20, statements
    with db.transaction(write=False) as session:
        for contact in contacts:
            assert sorted(segments_repo.contact_tag_keys(session, contact.id)) == ["common", "t1", "t2"]


def test_an_event_fed_again_after_its_run_ended_starts_nothing_twice(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {"tags": ["go"]}},
            "steps": [{"id": "done", "type": "add_tags", "config": {"tags": ["done"]}}],
        },
        name="Go",
    )
    first, second = (customer_writes(db, channel, f"+5255{next(numbers):08d}", "hola") for _ in range(2))
    dispatch(db)
    position = dispatcher.newest_event_id(db)
    for contact_id in (first, second):
        with db.transaction() as session:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            contacts_service.do_add_tags(session, tenant.actor(), contact, ["go"])
        dispatch(db)
        runner.run_due(db, policy=POLICY)  # the run starts, tags and ends
        if contact_id == first:
            replay_from = position  # the first contact's event is read again below, with the second's
    with db.transaction() as session:  # as after a crash before the consumer stored its position
        session.execute(
            update(ConsumerPosition).where(ConsumerPosition.name == CONSUMER.name).values(last_event_id=replay_from)
        )
    dispatch(db)
    runner.run_due(db, policy=POLICY)
    with db.transaction(write=False) as session:
        runs = session.execute(select(WorkflowRun.contact_id, WorkflowRun.status)).all()
        status = session.get(ConsumerPosition, CONSUMER.name)
        tagged = session.scalars(
            select(EventRecord.contact_id).where(
                EventRecord.type == EventType.CONTACT_TAGGED, EventRecord.payload["tag"].as_string() == "done"
            )
        ).all()
    assert sorted(runs) == sorted([(first, "finished"), (second, "finished")])
    assert status is not None
    assert status.last_error is None
    assert sorted(tagged) == sorted([first, second])
