"""A channel that stops working reaches the endpoints subscribed to `channel.errored` (and its
recovery to `channel.recovered`), signed as every delivery, with the documented payload; a refused
recipient sends nothing. SQLite and PostgreSQL, a real local receiver and a local fake provider."""

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from tertulia.events import dispatcher
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.models import Role
from tertulia.web.context import LANGUAGE_COOKIE
from tertulia.webhooks import delivery
from tertulia.webhooks.fanout import CONSUMER
from tests.conftest import Tenant
from tests.conversations.support import fake_channel_with_contact, sign_in
from tests.fakes import fake_provider
from tests.web.helpers import sign_in_as
from tests.webhooks.support import create_endpoint, policy, private_addresses_allowed, receiver

pytestmark = pytest.mark.usefixtures("fakehttp_adapter", "allowed")

UNAUTHORIZED = (401, {"error": "the access token has expired"})
RECIPIENT_REFUSED = (400, {"error": "the recipient has opted out"})


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, webhooks_allow_private=True)


@pytest.fixture
def allowed() -> Iterator[None]:
    with private_addresses_allowed():
        yield


def _delivered(db: Database, hooks: Any, count: int) -> None:
    """Let the event log reach the webhooks and the deliveries go out, as a worker would, until the
    receiver has `count` requests (the inline queue usually did it already; under load the log's
    horizon may hold an event back for a moment)."""
    deadline = time.monotonic() + 15
    while len(hooks.requests) < count and time.monotonic() < deadline:
        dispatcher.dispatch(db, [CONSUMER], settle_wait=0.5)
        delivery.deliver_until_idle(db, policy(), budget_seconds=2)
        time.sleep(0.05)


def _send(client: TestClient, tenant: Tenant, channel_id: int, contact_id: int, text: str) -> None:
    response = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={"channel_id": channel_id, "message": {"type": "text", "text": text}},
    )
    assert response.status_code == 201, response.text


def test_an_auth_error_reaches_an_endpoint_subscribed_to_channel_errored_signed_and_documented(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks, fake_provider() as provider:
        errored_only = create_endpoint(client, tenant.headers, hooks.url + "/errored", ["channel.errored"])
        both = create_endpoint(client, tenant.headers, hooks.url + "/both", ["channel.errored", "channel.recovered"])
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)

        provider.script += [RECIPIENT_REFUSED, RECIPIENT_REFUSED]
        _send(client, tenant, channel_id, contact_id, "refused 1")
        _send(client, tenant, channel_id, contact_id, "refused 2")
        assert hooks.requests == []  # one recipient refused: the channel works, nothing is sent

        provider.script += [UNAUTHORIZED, UNAUTHORIZED]
        _send(client, tenant, channel_id, contact_id, "locked out 1")
        _send(client, tenant, channel_id, contact_id, "locked out 2")
        _delivered(db, hooks, 2)
        errored = [r for r in hooks.requests if r.json["type"] == "channel.errored"]
        assert sorted(r.path for r in errored) == ["/hooks/both", "/hooks/errored"]  # once per endpoint
        manager = sign_in(db, tenant, Role.MANAGER).headers
        shown_in_error = client.get(f"/api/v1/channels/{channel_id}", headers=manager).json()

        _send(client, tenant, channel_id, contact_id, "works again")
        assert provider.calls == 5
        _delivered(db, hooks, 3)

    for request in errored:
        secret = errored_only["secret"] if request.path.endswith("/errored") else both["secret"]
        payload = Webhook(secret).verify(request.body, request.headers)  # the reference library
        assert payload["id"] == request.headers["webhook-id"]
    body: dict[str, Any] = errored[0].json
    assert set(body) == {"id", "type", "created_at", "workspace_id", "data"}
    assert (body["type"], body["workspace_id"]) == ("channel.errored", tenant.workspace_id)
    health = body["data"]["channel"].pop("health")
    assert body["data"] == {
        "channel": {"id": channel_id, "type": "fakehttp", "name": "Fake", "active": True},
        "error": "the access token has expired",
        "fault": "credentials",
        "code": "401",
    }
    # The API's own health shape, as it was when the channel went into error (the second refusal,
    # later, moved the API's last_error_at on).
    assert set(health) == set(shown_in_error["health"])
    assert (health["state"], health["last_error"]) == ("error", "the access token has expired")
    assert (shown_in_error["health"]["state"], shown_in_error["health"]["last_error"]) == (
        "error",
        "the access token has expired",
    )
    assert health["last_error_at"] <= shown_in_error["health"]["last_error_at"]

    recovered = [r for r in hooks.requests if r.json["type"] == "channel.recovered"]
    assert [r.path for r in recovered] == ["/hooks/both"]  # not to the endpoint that did not ask
    Webhook(both["secret"]).verify(recovered[0].body, recovered[0].headers)
    data = recovered[0].json["data"]
    assert data["channel"]["health"]["state"] == "connected"
    assert (data["error"], data["fault"], data["code"]) == ("the access token has expired", None, None)
    # Errored before recovered, for the endpoint that gets both.
    to_both = [r.json["type"] for r in hooks.requests if r.path == "/hooks/both"]
    assert to_both == ["channel.errored", "channel.recovered"]


def test_channel_events_are_offered_to_endpoints(client: TestClient, tenant: Tenant) -> None:
    listed = client.get("/api/v1/webhooks/events", headers=tenant.headers).json()
    assert {"name": "channel.errored", "emitted": True} in listed
    assert {"name": "channel.recovered", "emitted": True} in listed
    created = create_endpoint(client, tenant.headers, "https://hooks.example.com/x", ["channel.recovered"])
    assert created["events"] == ["channel.recovered"]


@pytest.mark.parametrize(
    ("language", "errored", "recovered"),
    [("es", "Canal con error", "Canal recuperado"), ("en", "Channel in error", "Channel recovered")],
)
def test_the_endpoint_form_offers_channel_events_in_the_users_language(
    client: TestClient, db: Database, tenant: Tenant, language: str, errored: str, recovered: str
) -> None:
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    page = client.get("/settings/webhooks")
    assert page.status_code == 200
    for name, label in (("channel.errored", errored), ("channel.recovered", recovered)):
        checkbox = re.search(rf'<input[^>]*value="{re.escape(name)}"[^>]*>\s*([^<]+)', page.text)
        assert checkbox is not None, name
        assert checkbox.group(1).strip() == label
