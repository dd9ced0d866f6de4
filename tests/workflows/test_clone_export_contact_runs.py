"""Cloning, deleting, exporting and importing workflows through the API, and a contact's runs
(listed and stopped for that contact)."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.contacts.models import Contact
from tertulia.kit.db import Database
from tertulia.workflows import runner
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowVersion
from tests.conftest import Tenant
from tests.web.helpers import csrf_from, sign_in_as

pytestmark = pytest.mark.usefixtures("no_background_work")

FLOW: dict[str, Any] = {
    "trigger": {"type": "manual"},
    "steps": [
        {"id": "tag", "type": "add_tags", "config": {"tags": ["seen"]}, "next": "wait"},
        {"id": "wait", "type": "wait", "config": {"duration": {"amount": 2, "unit": "hours"}}},
    ],
}


def _run_for_a_contact(db: Database, tenant: Tenant, workflow_id: int) -> tuple[int, int]:
    """A contact with a run of the (published) workflow taken to its wait; (contact id, run id)."""
    with db.transaction() as session:
        workflow = session.get(Workflow, workflow_id)
        assert workflow is not None
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        contact = Contact(workspace_id=tenant.workspace_id, first_name="Ana")
        session.add(contact)
        session.flush()
        run = runner.start_run(session, workflow, version, contact.id, {}, once_per_contact=False)
        assert run is not None
        ids = contact.id, run.id
    runner.run_due(db, policy=runner.Policy(allow_private=False))
    return ids


def test_export_import_clone_and_delete(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = tenant.headers
    created = client.post("/api/v1/workflows", headers=headers, json={"name": "Bienvenida", "definition": FLOW})
    assert created.status_code == 201
    workflow_id = created.json()["id"]
    exported = client.get(f"/api/v1/workflows/{workflow_id}/export", headers=headers)
    assert exported.status_code == 200
    assert exported.json() == {"name": "Bienvenida", "definition": FLOW}

    imported = client.post("/api/v1/workflows", headers=headers, json=exported.json())
    assert imported.status_code == 201
    assert imported.json()["definition"] == FLOW
    assert imported.json()["status"] == "draft"

    broken = exported.json()
    broken["definition"]["steps"][1]["config"]["duration"]["amount"] = -3
    refused = client.post("/api/v1/workflows", headers=headers, json=broken)
    assert refused.status_code == 422
    assert any(path.startswith("steps[1].config.duration") for path in refused.json()["error"]["details"])

    clone = client.post(f"/api/v1/workflows/{workflow_id}/clone", headers=headers)
    assert clone.status_code == 201
    assert clone.json()["name"] == "Copy of Bienvenida"
    assert clone.json()["status"] == "draft"
    assert clone.json()["definition"] == FLOW
    assert clone.json()["id"] not in (workflow_id, imported.json()["id"])

    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=headers).status_code == 200
    _contact_id, run_id = _run_for_a_contact(db, tenant, workflow_id)
    assert client.delete(f"/api/v1/workflows/{workflow_id}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/workflows/{workflow_id}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/workflows/{workflow_id}/export", headers=headers).status_code == 404
    with db.transaction(write=False) as session:
        assert session.get(WorkflowRun, run_id) is None  # its runs went with it
        assert session.scalar(select(func.count()).where(WorkflowVersion.workflow_id == workflow_id)) == 0
    # The clone and the import are untouched.
    assert client.get(f"/api/v1/workflows/{clone.json()['id']}", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/workflows/{workflow_id}", headers=headers).status_code == 404


def test_a_contacts_runs_are_listed_and_stopped_for_that_contact(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    headers = tenant.headers
    workflow_id = client.post(
        "/api/v1/workflows", headers=headers, json={"name": "Seguimiento", "definition": FLOW}
    ).json()["id"]
    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=headers).status_code == 200
    contact_id, run_id = _run_for_a_contact(db, tenant, workflow_id)
    listed = client.get(f"/api/v1/contacts/id:{contact_id}/workflow-runs", headers=headers)
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == run_id
    assert item["workflow_name"] == "Seguimiento"
    assert item["status"] == "waiting"
    assert item["at_step"] == "wait"
    assert [log["step_id"] for log in item["last_logs"]] == ["tag"]

    other = client.post("/api/v1/contacts", headers=headers, json={"first_name": "Otro"}).json()["id"]
    assert client.post(f"/api/v1/contacts/id:{other}/workflow-runs/{run_id}/stop", headers=headers).status_code == 404
    stopped = client.post(f"/api/v1/contacts/id:{contact_id}/workflow-runs/{run_id}/stop", headers=headers)
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped"
    again = client.post(f"/api/v1/contacts/id:{contact_id}/workflow-runs/{run_id}/stop", headers=headers)
    assert again.status_code == 409
    assert client.get("/api/v1/contacts/id:999999/workflow-runs", headers=headers).status_code == 404


def test_the_pages_clone_export_import_and_delete(client: TestClient, db: Database, tenant: Tenant) -> None:
    workflow_id = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "Eco", "definition": FLOW}
    ).json()["id"]
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get(f"/workflows/{workflow_id}")
    assert 'data-testid="clone"' in page.text
    token = csrf_from(page)
    exported = client.get(f"/workflows/{workflow_id}/export")
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    assert exported.json() == {"name": "Eco", "definition": FLOW}

    cloned = client.post(f"/workflows/{workflow_id}/clone", data={"csrf_token": token}, follow_redirects=False)
    assert cloned.status_code == 303
    assert "Copy of Eco" in client.get(cloned.headers["location"]).text

    wrong = json.loads(exported.text)
    wrong["definition"]["steps"][0]["config"]["tags"] = []
    refused = client.post(
        "/workflows/import",
        data={"csrf_token": token},
        files={"file": ("eco.json", json.dumps(wrong).encode(), "application/json")},
    )
    assert refused.status_code == 422
    assert 'data-testid="import-error"' in refused.text
    assert "steps[0].config.tags" in refused.text
    not_json = client.post(
        "/workflows/import", data={"csrf_token": token}, files={"file": ("eco.json", b"{nope", "application/json")}
    )
    assert not_json.status_code == 422
    assert 'id="file-error"' in not_json.text

    imported = client.post(
        "/workflows/import",
        data={"csrf_token": token},
        files={"file": ("eco.json", exported.content, "application/json")},
        follow_redirects=False,
    )
    assert imported.status_code == 303
    deleted = client.post(f"/workflows/{workflow_id}/delete", data={"csrf_token": token}, follow_redirects=False)
    assert deleted.status_code == 303
    assert client.get(f"/workflows/{workflow_id}").status_code == 404
    listing = client.get("/workflows").text
    assert listing.count('data-testid="workflow-row"') == 2  # the clone and the import
