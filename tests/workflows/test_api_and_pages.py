"""/api/v1/workflows and the workflow pages: validation with paths, permissions, publish, stop,
simulate, runs."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.models import Channel
from tertulia.conversations.service import do_create_closing_category
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.workflows import language
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider
from tests.web.helpers import sign_in_as
from tests.workflows.support import advance, channel_on_fake, customer_writes, feed

FLOW: dict[str, Any] = {
    "trigger": {"type": "tag_added", "config": {"tags": ["vip"]}},
    "steps": [
        {"id": "note", "type": "add_comment", "config": {"text": "VIP {{contact.first_name}}"}, "next": "branch"},
        {
            "id": "branch",
            "type": "branch",
            "config": {
                "branches": [
                    {
                        "name": "Mexico",
                        "conditions": {
                            "groups": [
                                {
                                    "conditions": [
                                        {
                                            "category": "contact_field",
                                            "field": "country",
                                            "operator": "is",
                                            "value": "MX",
                                        }
                                    ]
                                }
                            ]
                        },
                        "next": "mx",
                    }
                ]
            },
            "next": "other",
        },
        {"id": "mx", "type": "add_tags", "config": {"tags": ["mx"]}},
        {"id": "other", "type": "wait", "config": {"duration": {"amount": 2, "unit": "hours"}}},
    ],
}


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[tuple[Channel, FakeProvider]]:
    with channel_on_fake(db, tenant) as found:
        yield found


def test_errors_come_back_with_the_path_of_step_and_field(client: TestClient, tenant: Tenant) -> None:
    bad = {
        "trigger": {"type": "tag_added"},
        "steps": [
            {"id": "a", "type": "send_message", "config": {"text": "Hi {{vars.nope}}"}, "next": "b"},
            {"id": "b", "type": "wait", "config": {"duration": {"amount": 8, "unit": "days"}}},
            {"id": "c", "type": "add_tags"},
        ],
    }
    response = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Bad", "definition": bad})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details["steps[0].config.text"] == "unknown variable {{vars.nope}}"
    assert details["steps[1].config.duration"] == "at most 7 days"
    assert details["steps[2].config"] == "this step needs its configuration"
    assert "unreachable" in details["steps[2]"]


def test_agents_may_not_see_or_edit_workflows(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/api/v1/workflows").status_code == 403
    assert client.get("/workflows").status_code == 403


def test_create_publish_simulate_run_and_stop(
    client: TestClient, db: Database, tenant: Tenant, channel: tuple[Channel, FakeProvider]
) -> None:
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "VIP", "definition": FLOW})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    assert created.json()["status"] == "draft"
    contact_id = customer_writes(db, channel[0], "vip-1", "hola")
    client.patch(
        f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers, json={"country": "MX", "first_name": "Eva"}
    )

    simulated = client.post(
        f"/api/v1/workflows/{workflow_id}/simulate", headers=tenant.headers, json={"contact": f"id:{contact_id}"}
    )
    assert simulated.status_code == 200, simulated.text
    body = simulated.json()
    assert body["path"] == ["note", "branch", "mx"]
    assert [a["kind"] for a in body["actions"]] == ["add_comment", "add_tags"]
    assert body["actions"][0]["params"]["text"] == "VIP Eva"
    # Nothing was done.
    tags = client.get(f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers).json()["tags"]
    assert "mx" not in tags

    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers).status_code == 200
    client.post(f"/api/v1/contacts/id:{contact_id}/tags", headers=tenant.headers, json={"tags": ["vip"]})
    feed(db)
    tags = client.get(f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers).json()["tags"]
    assert "mx" in tags
    runs = client.get(f"/api/v1/workflows/{workflow_id}/runs", headers=tenant.headers).json()["items"]
    assert [r["status"] for r in runs] == ["finished"]
    assert [log["step_id"] for log in runs[0]["logs"]] == ["note", "branch", "mx"]

    sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get(f"/workflows/{workflow_id}")
    assert page.status_code == 200
    assert "run-row" in page.text
    listing = client.get("/workflows")
    assert "VIP" in listing.text

    stopped = client.post(f"/api/v1/workflows/{workflow_id}/stop", headers=tenant.headers)
    assert stopped.status_code == 200
    assert stopped.json()["workflow"]["status"] == "stopped"


def test_editing_a_published_workflow_makes_a_draft_and_runs_keep_their_version(
    client: TestClient, db: Database, tenant: Tenant, channel: tuple[Channel, FakeProvider]
) -> None:
    waiting = {
        "trigger": {"type": "tag_added", "config": {"tags": ["vip"]}},
        "steps": [
            {"id": "wait", "type": "wait", "config": {"duration": {"amount": 1, "unit": "hours"}}, "next": "tag"},
            {"id": "tag", "type": "add_tags", "config": {"tags": ["first"]}},
        ],
    }
    workflow_id = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "W", "definition": waiting}
    ).json()["id"]
    client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers)
    contact_id = customer_writes(db, channel[0], "v-2", "hola")
    client.post(f"/api/v1/contacts/id:{contact_id}/tags", headers=tenant.headers, json={"tags": ["vip"]})
    feed(db)
    changed = {
        **waiting,
        "steps": [waiting["steps"][0], {"id": "tag", "type": "add_tags", "config": {"tags": ["second"]}}],
    }
    patched = client.patch(f"/api/v1/workflows/{workflow_id}", headers=tenant.headers, json={"definition": changed})
    assert patched.json()["has_draft"] is True
    assert patched.json()["published_version"] == 1
    client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers)
    advance(db, utcnow() + timedelta(hours=1, minutes=1))
    runs = client.get(f"/api/v1/workflows/{workflow_id}/runs", headers=tenant.headers).json()["items"]
    assert [(r["status"], r["version_id"]) for r in runs] == [("finished", 1)], runs
    tags = client.get(f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers).json()["tags"]
    assert "first" in tags
    assert "second" not in tags


def _builder_data(html: str) -> dict[str, Any]:
    start = html.index('<script type="application/json" id="workflow-builder-data">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    found: dict[str, Any] = json.loads(body)
    return found


def test_the_builder_gets_every_config_schema_and_the_errors_of_a_refused_save(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "B", "definition": FLOW})
    workflow_id = created.json()["id"]
    # What the pickers list: a custom field whose label would end the data block early if it were
    # not escaped, a workflow another may start (manual trigger), the workspace's closing categories.
    field = {"key": "plan", "label": "</script><i>Plan", "type": "text"}
    assert client.post("/api/v1/custom-fields", headers=tenant.headers, json=field).status_code == 201
    note = {key: value for key, value in FLOW["steps"][0].items() if key != "next"}
    manual = {"trigger": {"type": "manual"}, "steps": [note]}
    started = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Sub", "definition": manual})
    assert started.status_code == 201, started.text
    with db.transaction() as session:
        do_create_closing_category(session, tenant.actor(), "Resuelto & cerrado")
    categories = client.get("/api/v1/closing-categories", headers=tenant.headers).json()
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.post("/language", data={"language": "es", "next": "/workflows", "csrf_token": token})
    data = _builder_data(client.get(f"/workflows/{workflow_id}").text)
    # Every step and trigger type of the language, each with the schema its form is drawn from.
    assert set(data["steps"]) == set(language.STEP_CONFIGS)
    assert set(data["triggers"]) == set(language.TRIGGER_CONFIGS)
    question = data["steps"]["ask_question"]
    assert question["label"] == "Hacer una pregunta"
    assert list(question["schema"]["properties"])[:2] == ["text", "kind"]  # the model's order, not sorted
    assert data["labels"]["fields"]["max_attempts"] == "Intentos como máximo"
    # The conversation-opened trigger offers a reply to a broadcast among its sources, by name.
    opened = data["triggers"]["conversation_opened"]["schema"]["properties"]["sources"]["items"]["enum"]
    assert opened[:2] == ["contact", "broadcast_reply"]
    assert data["labels"]["values"]["broadcast_reply"] == "Respuesta a una difusión"
    assert data["outcomes"]["ask_question"] == ["invalid", "timeout"]
    assert data["definition"] == FLOW
    assert data["errors"] == {}
    choices = data["choices"]
    assert choices["field"][0] == {"value": "first_name", "label": "Nombre"}
    assert {"value": "plan", "label": "</script><i>Plan (plan)"} in choices["field"]
    assert choices["save_to.name"] == choices["fields"] == choices["field"]
    assert choices["workflow_id"] == [{"value": started.json()["id"], "label": "Sub"}]  # not itself: not manual
    assert sorted(c["value"] for c in choices["category_id"]) == sorted(c["id"] for c in categories)
    assert {c["label"] for c in choices["category_ids"]} == {c["name"] for c in categories}
    assert {c["value"] for c in choices["user_id"]} == {tenant.owner_id, tenant.manager_id, tenant.agent_id}
    assert choices["channel"] == choices["team_id"] == []  # none in this workspace yet

    # A name that would end the data block early if it were not escaped.
    first = {**FLOW["steps"][0], "name": "</script><b>x", "config": {"text": ""}, "next": "nowhere"}
    wrong = {**FLOW, "steps": [first, *FLOW["steps"][1:]]}
    refused = client.post(
        f"/workflows/{workflow_id}", data={"name": "B", "definition": json.dumps(wrong), "csrf_token": token}
    )
    assert refused.status_code == 422
    data = _builder_data(refused.text)
    assert data["definition"] == wrong  # what was typed, not what is stored
    # Pydantic's words and the checker's, in the page's language.
    assert data["errors"] == {
        "steps[0].config.text": "Al menos 1 carácter",
        "steps[0].next": "No hay ningún paso 'nowhere'",
        **{f"steps[{i}]": "Ningún camino lleva a este paso (inalcanzable)" for i in range(1, len(FLOW["steps"]))},
    }

    # Published, then saved again from the page: the list says a draft waits to be published.
    assert client.post(f"/api/v1/workflows/{workflow_id}/publish", headers=tenant.headers).status_code == 200
    assert "Cambios sin publicar" not in client.get("/workflows").text
    saved = client.post(
        f"/workflows/{workflow_id}",
        data={"name": "B", "definition": json.dumps(FLOW), "csrf_token": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    assert "Cambios sin publicar" in client.get("/workflows").text
