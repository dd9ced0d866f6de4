"""Settings > Integrations > Webhooks and /api/v1/webhooks: who may use them, the secret shown once,
errors beside the fields in Spanish and English, another workspace's endpoints not found."""

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.models import Role
from tertulia.web.context import LANGUAGE_COOKIE
from tertulia.webhooks import reasons
from tertulia.webhooks.models import WebhookEndpoint
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.webhooks.support import create_endpoint, private_addresses_allowed, receiver

PASSWORDS = {Role.OWNER: "owner-password", Role.MANAGER: "manager-password", Role.AGENT: "agent-password"}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, webhooks_allow_private=True)


@pytest.fixture
def allowed() -> Iterator[None]:
    with private_addresses_allowed():
        yield


def _user(tenant: Tenant, role: Role) -> int:
    return {Role.OWNER: tenant.owner_id, Role.MANAGER: tenant.manager_id, Role.AGENT: tenant.agent_id}[role]


def _count(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


@pytest.mark.parametrize("role", [Role.OWNER, Role.MANAGER])
def test_owners_and_managers_add_an_endpoint_and_see_its_secret_once(
    client: TestClient, db: Database, tenant: Tenant, role: Role
) -> None:
    token = sign_in_as(client, db, _user(tenant, role), PASSWORDS[role])
    page = client.get("/settings/webhooks")
    assert page.status_code == 200
    assert 'href="/settings/webhooks"' in page.text
    created = client.post(
        "/settings/webhooks",
        data={
            "url": "https://hooks.example.invalid/tertulia",
            "events": ["contact.created", "message.received"],
            "description": "CRM sync",
            "csrf_token": token,
        },
    )
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(whsec_[^"]+)"', created.text)
    assert secret is not None
    again = client.get("/settings/webhooks")
    assert "hooks.example.invalid/tertulia" in again.text
    assert secret.group(1) not in again.text  # shown once
    with db.transaction(write=False) as session:
        endpoint = session.scalars(select(WebhookEndpoint)).one()
        assert endpoint.events == ["contact.created", "message.received"]
        assert endpoint.secrets["current"] == secret.group(1)
        raw = session.execute(text("SELECT secrets FROM webhook_endpoints")).scalar_one()
    assert raw.startswith("v1:")
    assert secret.group(1) not in raw
    detail = client.get(f"/settings/webhooks/{endpoint.id}")
    assert detail.status_code == 200
    rotated = client.post(f"/settings/webhooks/{endpoint.id}/rotate-secret", data={"csrf_token": token})
    assert "whsec_" in rotated.text
    assert secret.group(1) not in rotated.text


def test_an_agent_is_refused_the_page_the_forms_and_the_api(client: TestClient, db: Database, tenant: Tenant) -> None:
    endpoint = create_endpoint(client, tenant.headers, "https://hooks.example.invalid/x", ["contact.created"])
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/settings/webhooks").status_code == 403
    assert 'href="/settings/webhooks"' not in client.get("/contacts").text
    refused = client.post(
        "/settings/webhooks",
        data={"url": "https://hooks.example.invalid/y", "events": ["contact.created"], "csrf_token": token},
    )
    assert refused.status_code == 403
    assert client.post(f"/settings/webhooks/{endpoint['id']}/delete", data={"csrf_token": token}).status_code == 403
    api = client.get("/api/v1/webhooks")  # the agent's session on the API
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "forbidden"
    assert _count(db) == 1


def test_an_api_token_manages_endpoints(client: TestClient, db: Database, tenant: Tenant) -> None:
    created = create_endpoint(client, tenant.headers, "https://hooks.example.invalid/x", ["contact.created"])
    assert created["secret"].startswith("whsec_")
    listed = client.get("/api/v1/webhooks", headers=tenant.headers).json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    patched = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        headers=tenant.headers,
        json={"events": ["message.sent"], "enabled": False},
    )
    assert patched.status_code == 200
    assert patched.json()["events"] == ["message.sent"]
    assert patched.json()["enabled"] is False
    bad = client.patch(f"/api/v1/webhooks/{created['id']}", headers=tenant.headers, json={"events": []})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == {"events": "Choose at least one event."}
    events = client.get("/api/v1/webhooks/events", headers=tenant.headers).json()
    assert {"name": "contact.deleted", "emitted": True} in events
    assert {"name": "workflow.run_failed", "emitted": True} in events
    assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=tenant.headers).status_code == 204
    assert _count(db) == 0


def test_another_workspaces_endpoint_is_not_found(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant("Otra")
    theirs = create_endpoint(client, other.headers, "https://hooks.example.invalid/x", ["contact.created"])
    sent = client.post(f"/api/v1/webhooks/{theirs['id']}/test", headers=other.headers).json()
    base = f"/api/v1/webhooks/{theirs['id']}"
    for method, path in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("POST", f"{base}/rotate-secret"),
        ("POST", f"{base}/test"),
        ("GET", f"{base}/deliveries"),
        ("GET", f"{base}/deliveries/{sent['id']}"),
        ("POST", f"{base}/deliveries/{sent['id']}/redeliver"),
    ]:
        response = client.request(method, path, headers=tenant.headers, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    # Its delivery through one of our endpoints is not found either.
    ours = create_endpoint(client, tenant.headers, "https://hooks.example.invalid/y", ["contact.created"])
    crossed = client.get(f"/api/v1/webhooks/{ours['id']}/deliveries/{sent['id']}", headers=tenant.headers)
    assert crossed.status_code == 404
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert client.get(f"/settings/webhooks/{theirs['id']}").status_code == 404
    assert client.post(f"/settings/webhooks/{theirs['id']}/delete", data={"csrf_token": token}).status_code == 404
    assert _count(db) == 2


@pytest.mark.parametrize(
    ("language", "url_message", "events_message"),
    [
        ("es", "Escribe una URL https:// válida.", "Elige al menos un evento."),
        ("en", "Enter a valid https:// URL.", "Choose at least one event."),
    ],
)
def test_form_errors_are_shown_beside_their_fields(
    client: TestClient, db: Database, tenant: Tenant, language: str, url_message: str, events_message: str
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    response = client.post(
        "/settings/webhooks", data={"url": "ftp://example.com/x", "description": "Mi CRM", "csrf_token": token}
    )
    assert response.status_code == 422
    assert f'<p class="field-error" id="url-error" role="alert">{url_message}</p>' in response.text
    assert f'<p class="field-error" id="events-error" role="alert">{events_message}</p>' in response.text
    assert 'value="ftp://example.com/x"' in response.text  # what was typed is kept
    assert "Mi CRM" in response.text
    assert _count(db) == 0


@pytest.mark.parametrize(
    ("language", "by_person", "in_a_row", "for_hours"),
    [
        (
            "es",
            "Lo desactivó una persona.",
            "12 entregas fallidas seguidas",
            "Todas las entregas fallaron durante 24 horas",
        ),
        ("en", "Disabled by a person.", "12 failed deliveries in a row", "Every delivery failed for 24 hours"),
    ],
)
def test_the_page_says_why_an_endpoint_is_off_in_the_readers_language(
    client: TestClient, db: Database, tenant: Tenant, language: str, by_person: str, in_a_row: str, for_hours: str
) -> None:
    """The reason is stored in English (the API's), and told on the page in the reader's language."""
    endpoint = create_endpoint(client, tenant.headers, "https://hooks.example.invalid/x", ["contact.created"])
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    page = f"/settings/webhooks/{endpoint['id']}"
    assert client.post(f"{page}/disable", data={"csrf_token": token}).status_code == 200
    assert f'<span class="muted">{by_person}</span>' in client.get(page).text
    shown = client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant.headers).json()
    assert shown["disabled_reason"] == "Disabled by a person."
    for stored, told in ((reasons.in_a_row(12), in_a_row), (reasons.for_hours(24.0), for_hours)):
        with db.transaction() as session:
            session.execute(update(WebhookEndpoint).values(disabled_reason=stored))
        assert f'<span class="muted">{told}</span>' in client.get(page).text


@pytest.mark.usefixtures("allowed")
def test_the_page_sends_a_test_event_and_redelivers_it(client: TestClient, db: Database, tenant: Tenant) -> None:
    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        token = sign_in_as(client, db, tenant.owner_id, "owner-password")
        sent = client.post(f"/settings/webhooks/{endpoint['id']}/test", data={"csrf_token": token})
        assert sent.status_code == 200  # followed the redirect back to the endpoint's page
        assert "webhook.test" in sent.text
        assert len(hooks.requests) == 1
        delivery_id = re.search(r"/deliveries/(\d+)/redeliver", sent.text)
        assert delivery_id is not None
        page = client.get(f"/settings/webhooks/{endpoint['id']}")
        assert "HTTP 200" in page.text
        assert hooks.requests[0].headers["webhook-id"] in page.text
