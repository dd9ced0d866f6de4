"""A run that fails (here: runaway protection, more steps in a minute than allowed) is stopped, its
workflow shows the error, and `workflow.run_failed` is written to the event log, which outgoing
webhooks turn into their event of the same name."""

from typing import Any

import pytest
from sqlalchemy import select

from tertulia.contacts.models import Contact
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tertulia.webhooks.catalogue import webhook_events
from tertulia.workflows import engine, runner, service
from tertulia.workflows.models import RunStatus, Workflow, WorkflowRun, WorkflowVersion
from tests.conftest import Tenant

pytestmark = pytest.mark.usefixtures("no_background_work")


def runaway() -> dict[str, Any]:
    """90 branches that never match, then a jump back to the first, ten times: 910 steps at once."""
    never = {"groups": [{"conditions": [{"category": "tag", "operator": "has_any_of", "value": ["zzz"]}]}]}
    steps: list[dict[str, Any]] = [
        {
            "id": f"s{i}",
            "type": "branch",
            "config": {"branches": [{"name": "never", "conditions": never}]},
            "next": f"s{i + 1}",
        }
        for i in range(90)
    ]
    steps.append({"id": "s90", "type": "jump_to", "config": {"target": "s0", "max_jumps": 10}})
    return {"trigger": {"type": "manual"}, "steps": steps}


def test_a_runaway_run_fails_and_is_reported_in_the_event_log(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), "Loop", runaway())
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        contact = Contact(workspace_id=tenant.workspace_id, first_name="Ana")
        session.add(contact)
        session.flush()
        run = runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
        assert run is not None
        run_id, workflow_id, contact_id = run.id, workflow.id, contact.id
    runner.run_due(db, policy=runner.Policy(allow_private=False))
    with db.transaction(write=False) as session:
        stored = session.get(WorkflowRun, run_id)
        assert stored is not None
        assert stored.status == RunStatus.FAILED
        assert stored.steps <= engine.MAX_STEPS_PER_MINUTE + 1
        assert "steps in a minute" in (stored.last_error or "")
        flow = session.get(Workflow, workflow_id)
        assert flow is not None
        assert flow.last_error == stored.last_error
        events = list(session.scalars(select(EventRecord).where(EventRecord.type == "workflow.run_failed")))
    assert len(events) == 1
    event = events[0]
    assert event.contact_id == contact_id
    assert event.payload["run_id"] == run_id
    assert event.payload["workflow_id"] == workflow_id
    assert event.payload["workflow_name"] == "Loop"
    assert event.payload["step_id"] is not None
    assert "steps in a minute" in event.payload["error"]
    assert webhook_events(event.type, event.payload) == ["workflow.run_failed"]


def test_a_run_stopped_by_a_person_is_not_a_failure(db: Database, tenant: Tenant) -> None:
    flow = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "w", "type": "wait", "config": {"duration": {"amount": 1, "unit": "hours"}}}],
    }
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), "Wait", flow)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        contact = Contact(workspace_id=tenant.workspace_id, first_name="Ana")
        session.add(contact)
        session.flush()
        run = runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
        assert run is not None
        run_id = run.id
    runner.run_due(db, policy=runner.Policy(allow_private=False))
    with db.transaction() as session:
        stored = session.get(WorkflowRun, run_id)
        assert stored is not None
        service.do_stop_run(session, tenant.actor(), stored)
    with db.transaction(write=False) as session:
        assert session.scalar(select(EventRecord.id).where(EventRecord.type == "workflow.run_failed")) is None
