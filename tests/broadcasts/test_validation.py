"""Bad input is a 422 naming the field; an action that does not fit the status is a 409."""

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tests.broadcasts.support import customers_write, fake_channel
from tests.broadcasts.test_audience import whatsapp
from tests.channels import whatsapp_template_samples as template_samples
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


def test_a_named_templates_parameters_are_checked_by_name_before_sending(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    channel = whatsapp(db, tenant)
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        sale = template_samples.SPRING_SALE
        listed = ProviderTemplate(
            sale["id"], sale["name"], sale["language"], sale["category"], sale["status"], "NAMED", sale["components"]
        )
        do_store_templates(session, stored, [listed])
    with travel(timedelta(hours=-25)):  # the window has closed: the template goes out
        customers_write(db, channel, ["5215500000001"])

    def dry_run(body: list[dict[str, Any]]) -> Response:
        template = {"name": "spring_sale", "language": "en_US", "components": body}
        created = client.post(
            "/api/v1/broadcasts",
            headers=tenant.headers,
            json={
                "name": "Rebajas",
                "audience": "all",
                "channel_id": channel.id,
                "content": {"whatsapp": {"template": template}},
            },
        )
        assert created.status_code == 201, created.text
        return client.post(f"/api/v1/broadcasts/{created.json()['id']}/dry-run", headers=tenant.headers)

    header = {"type": "header", "parameters": [{"parameter_name": "sale_start_date", "text": "el lunes"}]}
    first_name = {"parameter_name": "first_name", "variable": "contact.first_name", "fallback": "cliente"}
    code = {"parameter_name": "discount_code", "text": "PRIMAVERA"}
    ready = dry_run([header, {"type": "body", "parameters": [first_name, code]}])
    assert ready.status_code == 200, ready.text
    assert ready.json()["counts"]["templates_by_channel"] == {str(channel.id): 1}
    unknown = dry_run([header, {"type": "body", "parameters": [first_name, {**code, "parameter_name": "coupon"}]}])
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "template_parameters"
    assert unknown.json()["error"]["details"] == {
        "message.template.components[1].parameters[1]": "parameter_name must be one of: first_name, discount_code"
    }
