"""The contact page's "Workflows" card (workflows/trigger_views.py): a manager sees the contact's
runs with their last log lines and stops one; an agent gets no card and is refused its routes."""

import pytest
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tertulia.workflows.models import WorkflowRun
from tests.conftest import Tenant
from tests.web.helpers import csrf_from, sign_in_as
from tests.workflows.test_clone_export_contact_runs import FLOW, _run_for_a_contact

pytestmark = pytest.mark.usefixtures("no_background_work")

HTMX = {"HX-Request": "true"}


def test_a_manager_sees_and_stops_a_contacts_run(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = tenant.headers
    workflow_id = client.post(
        "/api/v1/workflows", headers=headers, json={"name": "Seguimiento", "definition": FLOW}
    ).json()["id"]
    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=headers).status_code == 200
    contact_id, run_id = _run_for_a_contact(db, tenant, workflow_id)
    quiet = client.post("/api/v1/contacts", headers=headers, json={"first_name": "Quieto"}).json()["id"]
    sign_in_as(client, db, tenant.manager_id, "manager-password")

    page = client.get(f"/contacts/{contact_id}")
    assert f'hx-get="/workflows/contacts/{contact_id}/runs"' in page.text
    token = csrf_from(page)
    card = client.get(f"/workflows/contacts/{contact_id}/runs")
    assert card.status_code == 200
    assert f'<a href="/workflows/{workflow_id}">Seguimiento</a>' in card.text
    assert f'data-run-id="{run_id}" data-status="waiting"' in card.text
    assert "<code>wait</code>" in card.text  # the step it waits at
    assert "<code>tag</code> (Add tags)" in card.text  # its log
    assert 'data-testid="contact-run-stop"' in card.text

    stop = f"/workflows/contacts/{contact_id}/runs/{run_id}/stop"
    # Another contact's card cannot reach this run.
    assert client.post(f"/workflows/contacts/{quiet}/runs/{run_id}/stop", data={"csrf_token": token}).status_code == 404
    stopped = client.post(stop, data={"csrf_token": token}, headers=HTMX)
    assert stopped.status_code == 200
    assert f'data-run-id="{run_id}" data-status="stopped"' in stopped.text
    assert "The workflow was stopped for this contact." in stopped.text
    assert 'data-testid="contact-run-stop"' not in stopped.text
    with db.transaction() as session:
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        assert run.status == "stopped"
    again = client.post(stop, data={"csrf_token": token}, headers={**HTMX, "Accept-Language": "es"})
    assert again.status_code == 409
    assert "Esta ejecución no está en curso." in again.text

    empty = client.get(f"/workflows/contacts/{quiet}/runs", headers={"Accept-Language": "es"})
    assert 'data-testid="contact-run"' not in empty.text
    assert "Ningún flujo se ha ejecutado para este contacto." in empty.text
    assert client.get("/workflows/contacts/999999/runs").status_code == 404


def test_an_agent_has_no_workflows_card(client: TestClient, db: Database, tenant: Tenant) -> None:
    headers = tenant.headers
    workflow_id = client.post(
        "/api/v1/workflows", headers=headers, json={"name": "Seguimiento", "definition": FLOW}
    ).json()["id"]
    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=headers).status_code == 200
    contact_id, run_id = _run_for_a_contact(db, tenant, workflow_id)
    sign_in_as(client, db, tenant.agent_id, "agent-password")

    page = client.get(f"/contacts/{contact_id}")
    assert page.status_code == 200
    assert "/workflows/contacts/" not in page.text
    assert client.get(f"/workflows/contacts/{contact_id}/runs").status_code == 403
    refused = client.post(f"/workflows/contacts/{contact_id}/runs/{run_id}/stop", data={"csrf_token": csrf_from(page)})
    assert refused.status_code == 403
    with db.transaction() as session:
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        assert run.status == "waiting"
