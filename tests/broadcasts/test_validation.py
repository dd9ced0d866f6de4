"""Bad input is a 422 naming the field; an action that does not fit the status is a 409."""

from datetime import timedelta

from fastapi.testclient import TestClient

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.broadcasts.support import customers_write, fake_channel
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter


def test_refusals_name_the_field(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    channel = fake_channel(db, tenant, "http://127.0.0.1:9")
    customers_write(db, channel, ["+5215500000001"])
    url = "/api/v1/broadcasts"
    cases = [
        ({"name": ""}, "name"),
        ({"name": "x", "content": {"whatsap": {"text": "hola"}}}, "content.whatsap"),
        ({"name": "x", "content": {"default": {"text": "Hola {{contact.apodo}}"}}}, "content.default.text"),
        ({"name": "x", "content": {"default": {}}}, "content.default"),
        ({"name": "x", "segment_id": 999}, "segment_id"),
        ({"name": "x", "channel_id": 999}, "channel_id"),
        ({"name": "x", "over_limit": "maybe"}, "over_limit"),
        ({"name": "x", "reply_window_hours": 0}, "reply_window_hours"),
        (
            {
                "name": "x",
                "content": {
                    "whatsapp": {
                        "template": {
                            "name": "promo",
                            "language": "es_MX",
                            "components": [{"type": "body", "parameters": [{"variable": "", "fallback": "a"}]}],
                        }
                    }
                },
            },
            "content.whatsapp.template.components[0].parameters[0].variable",
        ),
    ]
    for body, field in cases:
        answer = client.post(url, headers=tenant.headers, json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.json()["error"]["details"], (body, answer.json())
    created = client.post(url, headers=tenant.headers, json={"name": "Sin canal", "audience": "all"}).json()
    not_ready = client.post(f"{url}/{created['id']}/schedule", headers=tenant.headers, json={})
    assert not_ready.status_code == 422
    assert "channel_id" in not_ready.json()["error"]["details"]
    ready = client.patch(
        f"{url}/{created['id']}",
        headers=tenant.headers,
        json={"channel_id": channel.id, "content": {"default": {"text": "Hola"}}},
    )
    assert ready.status_code == 200, ready.text
    past = (utcnow() - timedelta(hours=1)).isoformat()
    late = client.post(f"{url}/{created['id']}/schedule", headers=tenant.headers, json={"scheduled_at": past})
    assert late.status_code == 422
    assert "scheduled_at" in late.json()["error"]["details"]
    resend = client.post(f"{url}/{created['id']}/resend-failed", headers=tenant.headers)
    assert resend.status_code == 409
    assert resend.json()["error"]["code"] == "broadcast_status"
    bad_keywords = client.put(
        "/api/v1/broadcast-settings", headers=tenant.headers, json={"unsubscribe_keywords": ["dos palabras"]}
    )
    assert bad_keywords.status_code == 422
    assert "unsubscribe_keywords[0]" in bad_keywords.json()["error"]["details"]
