"""The shortcut and incoming-webhook triggers through the API and the pages, on both databases:
answers checked against the form and turned into variables, blocked contacts and "once per contact"
refused, the webhook's secret, body limits, contact found or created, and the reasons a run did not
start."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.support import advance

pytestmark = pytest.mark.usefixtures("no_background_work")

NOTE = {"key": "note", "label": "Note", "type": "text"}
SHORTCUT: dict[str, Any] = {
    "trigger": {
        "type": "shortcut",
        "config": {
            "form": [
                {"name": "reason", "label": "Motivo", "required": True},
                {"name": "amount", "label": "Importe", "kind": "number"},
                {"name": "plan", "label": "Plan", "kind": "choice", "options": ["Basic", "Pro"]},
            ]
        },
        "once_per_contact": True,
    },
    "steps": [
        {
            "id": "note",
            "type": "update_field",
            "config": {
                "field": "note",
                "value": '{{trigger.reason}}/{{trigger.amount}}/{{trigger.plan | "-"}}/{{trigger.user_id | "api"}}',
            },
        }
    ],
}
HOOKED: dict[str, Any] = {
    "trigger": {"type": "incoming_webhook"},
    "steps": [
        {
            "id": "note",
            "type": "update_field",
            "config": {
                "field": "note",
                "value": "{{trigger.order.id}} {{trigger.order.total}} {{trigger.items._0.sku}}",
            },
        }
    ],
}


def published(client: TestClient, tenant: Tenant, definition: dict[str, Any], name: str = "Flow") -> int:
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": name, "definition": definition})
    assert created.status_code == 201, created.text
    workflow_id = int(created.json()["id"])
    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers).status_code == 200
    return workflow_id


def new_contact(client: TestClient, tenant: Tenant, email: str) -> int:
    response = client.post("/api/v1/contacts", headers=tenant.headers, json={"email": email})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def note_of(client: TestClient, tenant: Tenant, contact: str) -> Any:
    return client.get(f"/api/v1/contacts/{contact}", headers=tenant.headers).json()["custom_fields"].get("note")


def test_checking_the_new_triggers(client: TestClient, tenant: Tenant) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    bad_form = {
        "trigger": {
            "type": "shortcut",
            "config": {
                "form": [
                    {"name": "a", "label": "A", "kind": "choice", "options": ["x"]},
                    {"name": "a", "label": "B", "options": ["y", "z"]},
                    {"name": "user_id", "label": "C"},
                ]
            },
        },
        "steps": [{"id": "s", "type": "update_field", "config": {"field": "note", "value": "{{trigger.nope}}"}}],
    }
    details = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "x", "definition": bad_form}
    ).json()["error"]["details"]
    assert details["trigger.config.form[0].options"] == "a choice needs 2 to 10 options"
    assert details["trigger.config.form[1].name"] == "another field is already named 'a'"
    assert details["trigger.config.form[1].options"] == "only a choice has options"
    assert "taken" in details["trigger.config.form[2].name"]
    assert details["steps[0].config.value"] == "unknown variable {{trigger.nope}}"
    bad_date = {
        "trigger": {"type": "date", "config": {"field": "note", "time": "25:00"}},
        "steps": [{"id": "s", "type": "update_field", "config": {"field": "note", "value": "{{trigger.date}}"}}],
    }
    details = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "x", "definition": bad_date}
    ).json()["error"]["details"]
    assert details["trigger.config.field"] == "'note' is not a date or date-time contact field"
    assert details["trigger.config.time"] == "must be a time HH:MM"
    yearly_instant = {"type": "date", "config": {"field": "created_at", "repeat": "yearly"}}
    details = client.post(
        "/api/v1/workflows",
        headers=tenant.headers,
        json={"name": "x", "definition": {**bad_date, "trigger": yearly_instant}},
    ).json()["error"]["details"]
    assert details == {"trigger.config.repeat": "only a date field (not a date-time) can repeat every year"}


def test_a_shortcut_runs_with_its_answers_once_per_contact(client: TestClient, db: Database, tenant: Tenant) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    workflow_id = published(client, tenant, SHORTCUT)
    contact_id = new_contact(client, tenant, "ana@example.com")
    run = f"/api/v1/workflows/{workflow_id}/run"

    refused = client.post(
        run, headers=tenant.headers, json={"contact": f"id:{contact_id}", "answers": {"amount": "x", "plan": "Gold"}}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {
        "answers.reason": "this field is required",
        "answers.amount": "must be a number",
        "answers.plan": "must be one of the options",
    }
    started = client.post(
        run,
        headers=tenant.headers,
        json={"contact": f"id:{contact_id}", "answers": {"reason": " Renovar ", "amount": "12,5", "plan": "pro"}},
    )
    assert started.status_code == 201, started.text
    assert started.json()["status"] == "running"
    advance(db)
    assert note_of(client, tenant, f"id:{contact_id}") == "Renovar/12.5/Pro/api"

    again = client.post(run, headers=tenant.headers, json={"contact": f"id:{contact_id}", "answers": {"reason": "b"}})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_ran"

    blocked_id = new_contact(client, tenant, "bloqueada@example.com")
    client.post(f"/api/v1/contacts/id:{blocked_id}/block", headers=tenant.headers)
    blocked = client.post(run, headers=tenant.headers, json={"contact": f"id:{blocked_id}", "answers": {"reason": "c"}})
    assert blocked.status_code == 409
    assert blocked.json()["error"]["code"] == "contact_blocked"

    other = published(client, tenant, HOOKED, "Not a shortcut")
    wrong = client.post(f"/api/v1/workflows/{other}/run", headers=tenant.headers, json={"contact": f"id:{contact_id}"})
    assert wrong.status_code == 409
    assert wrong.json()["error"]["code"] == "wrong_trigger"


def test_an_agent_runs_a_shortcut_from_the_menu(client: TestClient, db: Database, tenant: Tenant) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    workflow_id = published(client, tenant, {**SHORTCUT, "trigger": {**SHORTCUT["trigger"], "once_per_contact": False}})
    contact_id = new_contact(client, tenant, "eva@example.com")
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    contact_page = client.get(f"/contacts/{contact_id}")
    assert f"/workflows/shortcuts/menu?contact_id={contact_id}" in contact_page.text

    menu = client.get(f"/workflows/shortcuts/menu?contact_id={contact_id}")
    assert menu.status_code == 200
    assert "Flow" in menu.text
    assert "Motivo" in menu.text
    assert "Pro" in menu.text

    form = {"csrf_token": token, "answer_0": "", "answer_1": "diez"}
    refused = client.post(f"/workflows/{workflow_id}/shortcut/{contact_id}", data=form, headers={"HX-Request": "true"})
    assert refused.status_code == 422
    assert 'id="answers.reason-error"' in refused.text
    assert 'value="diez"' in refused.text  # what was typed is kept

    client.post("/language", data={"csrf_token": token, "language": "es"})
    refused_es = client.post(
        f"/workflows/{workflow_id}/shortcut/{contact_id}", data=form, headers={"HX-Request": "true"}
    )
    assert "este campo es obligatorio" in refused_es.text

    form.update({"answer_0": "Llamada", "answer_1": "3"})
    done = client.post(f"/workflows/{workflow_id}/shortcut/{contact_id}", data=form, headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert 'data-testid="shortcut-done"' in done.text
    advance(db)
    assert note_of(client, tenant, f"id:{contact_id}") == f"Llamada/3/-/{tenant.agent_id}"


def test_an_incoming_webhook_finds_or_creates_the_contact(client: TestClient, db: Database, tenant: Tenant) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    workflow_id = published(client, tenant, HOOKED, "Hook")
    hook = client.get(f"/api/v1/workflows/{workflow_id}/hook", headers=tenant.headers).json()
    assert hook["url"].endswith(f"/hooks/workflows/{workflow_id}/{hook['secret']}")
    assert hook["url"] in hook["curl"]
    path = hook["url"].split("://", 1)[1].split("/", 1)[1]
    body = {
        "email": "Nueva@Example.com",
        "first_name": "Nía",
        "order": {"id": "A-1", "total": 59.9},
        "items": [{"sku": "X"}],
    }

    wrong = client.post(f"/hooks/workflows/{workflow_id}/{hook['secret'][:-1]}x", json=body)
    assert wrong.status_code == 404
    assert wrong.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/contacts?q=nueva", headers=tenant.headers).json()["items"] == []

    answered = client.post(f"/{path}", json=body)
    assert answered.status_code == 202, answered.text
    assert answered.json()["started"] is True
    contact_id = answered.json()["contact_id"]
    advance(db)
    contact = client.get(f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers).json()
    assert (contact["email"], contact["first_name"]) == ("nueva@example.com", "Nía")
    assert contact["custom_fields"]["note"] == "A-1 59.9 X"

    by_header = client.post(
        f"/hooks/workflows/{workflow_id}",
        json={"id": contact_id, "order": {"id": "B"}},
        headers={"X-Tertulia-Secret": hook["secret"]},
    )
    assert by_header.status_code == 202
    assert (by_header.json()["started"], by_header.json()["contact_id"]) == (True, contact_id)

    assert client.post(f"/{path}", content=b"not json").status_code == 422
    assert client.post(f"/{path}", json=[1, 2]).json()["error"]["details"] == {"body": "must be a JSON object"}
    too_big = client.post(f"/{path}", json={"email": "a@example.com", "pad": "x" * 70_000})
    assert too_big.status_code == 413
    assert client.post(f"/{path}", json={"order": 1}).json()["error"]["details"] == {
        "email": "id, email or phone is required"
    }
    assert client.post(f"/{path}", json={"id": 999_999}).status_code == 422

    client.post(f"/api/v1/contacts/id:{contact_id}/block", headers=tenant.headers)
    advance(db)
    blocked = client.post(f"/{path}", json={"id": contact_id})
    assert (blocked.status_code, blocked.json()["reason"]) == (202, "contact_blocked")

    regenerated = client.post(f"/api/v1/workflows/{workflow_id}/hook/regenerate", headers=tenant.headers).json()
    assert regenerated["secret"] != hook["secret"]
    assert client.post(f"/{path}", json=body).status_code == 404

    client.post(f"/api/v1/workflows/{workflow_id}/stop", headers=tenant.headers)
    stopped = client.post(regenerated["url"].split("://", 1)[1].split("/", 1)[1].join(["/", ""]), json=body)
    assert (stopped.status_code, stopped.json()["reason"]) == (202, "not_published")

    sign_in_as(client, db, tenant.manager_id, "manager-password")
    card = client.get(f"/workflows/{workflow_id}/hook")
    assert regenerated["url"] in card.text
    assert 'data-copy="#hook-curl"' in card.text
