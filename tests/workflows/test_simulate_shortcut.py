"""Simulating a shortcut with its form answers: checked as when a person runs it (422 at
`form.<name>`, beside its field on the page), then given to the run as trigger variables; answers for
a trigger without a form are refused rather than ignored. Nothing is written by a simulation."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.kit.db import Database
from tertulia.workflows.models import WorkflowRun
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.test_shortcut_and_webhook import HOOKED, NOTE, SHORTCUT, new_contact, note_of, published

pytestmark = pytest.mark.usefixtures("no_background_work")


def _simulate(client: TestClient, tenant: Tenant, workflow_id: int, contact_id: int, **body: Any) -> Any:
    return client.post(
        f"/api/v1/workflows/{workflow_id}/simulate",
        headers=tenant.headers,
        json={"contact": f"id:{contact_id}", **body},
    )


def _runs(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(WorkflowRun)) or 0)


def test_the_api_simulates_a_shortcut_with_its_form_answers(client: TestClient, db: Database, tenant: Tenant) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    workflow_id = published(client, tenant, SHORTCUT)
    contact_id = new_contact(client, tenant, "ana@example.com")

    refused = _simulate(client, tenant, workflow_id, contact_id, form={"amount": "x", "plan": "Gold", "nope": 1})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {
        "form.nope": "no such field in the form",
        "form.reason": "this field is required",
        "form.amount": "must be a number",
        "form.plan": "must be one of the options",
    }

    simulated = _simulate(
        client, tenant, workflow_id, contact_id, form={"reason": "Renovar", "amount": "12,5", "plan": "pro"}
    )
    assert simulated.status_code == 200, simulated.text
    result = simulated.json()
    assert result["status"] == "finished"
    assert [a["kind"] for a in result["actions"]] == ["update_field"]
    assert result["actions"][0]["params"]["value"] == "Renovar/12.5/Pro/api"
    assert _runs(db) == 0  # a simulation starts nothing
    assert note_of(client, tenant, f"id:{contact_id}") is None

    hooked = published(client, tenant, HOOKED, "Hook")
    wrong = _simulate(client, tenant, hooked, contact_id, form={"reason": "x"})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"] == {"form": "the trigger has no form: only a shortcut takes answers"}


def test_the_page_simulates_a_shortcut_with_its_form_beside_the_contact(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    workflow_id = published(client, tenant, SHORTCUT)
    contact_id = new_contact(client, tenant, "eva@example.com")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.post("/language", data={"csrf_token": token, "language": "es"})

    page = client.get(f"/workflows/{workflow_id}")
    assert 'data-testid="simulation-form"' in page.text
    assert 'name="form_2"' in page.text
    assert "Pro</option>" in page.text

    form = {"csrf_token": token, "contact": f"id:{contact_id}", "form_0": "", "form_1": "diez"}
    refused = client.post(f"/workflows/{workflow_id}/simulate", data=form)
    assert refused.status_code == 422
    assert 'id="form.reason-error"' in refused.text
    assert "este campo es obligatorio" in refused.text
    assert 'value="diez"' in refused.text  # what was typed is kept

    form.update({"form_0": "Llamada", "form_1": "3", "form_2": "Basic"})
    done = client.post(f"/workflows/{workflow_id}/simulate", data=form)
    assert done.status_code == 200
    assert 'data-testid="simulation-result"' in done.text
    assert f"Llamada/3/Basic/{tenant.manager_id}" in done.text
    assert _runs(db) == 0
