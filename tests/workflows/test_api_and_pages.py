"""/api/v1/workflows and the workflow pages: validation with paths, permissions, publish, stop,
simulate, runs."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.models import Channel
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
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
