"""Deliveries to https endpoints: a receiver whose certificate a test certificate authority signed
gets the event, signed (the Standard Webhooks reference library verifies it), when the server
trusts that authority (TERTULIA_WEBHOOKS_CA_FILE); otherwise, or for a certificate made out to
another name, the attempt fails with the reason in words and nothing reaches the receiver."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tertulia.events import dispatcher
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.webhooks import delivery
from tertulia.webhooks.fanout import CONSUMER
from tertulia.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.conftest import Tenant
from tests.webhooks.support import create_endpoint, policy, receiver
from tests.webhooks.tls import TestAuthority


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, webhooks_allow_private=True)


@pytest.fixture
def queued(client: TestClient) -> Iterator[None]:
    """Nothing runs inline: the test feeds the consumer and runs the worker itself."""
    queue.huey.immediate = False
    yield
    queue.huey.flush()


@pytest.fixture
def authority(tmp_path: Path) -> TestAuthority:
    return TestAuthority(tmp_path)


def _new_contact_delivered_by(db: Database, client: TestClient, tenant: Tenant, rules: delivery.Policy) -> None:
    response = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"})
    assert response.status_code == 201, response.text
    newest = dispatcher.newest_event_id(db)
    deadline = time.monotonic() + 15
    while {s.name: s for s in dispatcher.consumer_status(db)}[CONSUMER.name].last_event_id < newest:
        assert time.monotonic() < deadline, "the webhooks consumer did not catch up"
        dispatcher.dispatch(db, [CONSUMER])
    delivery.deliver_batch(db, rules, delivery.new_owner())


def _delivery_and_attempts(db: Database) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    with db.transaction(write=False) as session:
        row = session.scalars(select(WebhookDelivery)).one()
        attempts = list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == row.id)))
        return row, attempts


@pytest.mark.usefixtures("queued")
def test_an_https_receiver_signed_by_a_trusted_authority_gets_a_verifiable_event(
    client: TestClient, db: Database, tenant: Tenant, authority: TestAuthority
) -> None:
    with receiver(tls=authority.issue("127.0.0.1", "localhost")) as hooks:
        assert hooks.url.startswith("https://")
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        _new_contact_delivered_by(db, client, tenant, policy(ca_file=str(authority.ca_file)))
        assert len(hooks.requests) == 1
    request = hooks.requests[0]
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "contact.created"
    row, attempts = _delivery_and_attempts(db)
    assert row.state == "delivered"
    assert [(a.status, a.error) for a in attempts] == [(200, None)]


@pytest.mark.usefixtures("queued")
def test_a_certificate_from_an_authority_not_trusted_is_a_failed_attempt_with_its_reason(
    client: TestClient, db: Database, tenant: Tenant, authority: TestAuthority
) -> None:
    with receiver(tls=authority.issue("127.0.0.1")) as hooks:
        create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        _new_contact_delivered_by(db, client, tenant, policy())  # public authorities only
        assert hooks.requests == []  # nothing was sent over the untrusted connection
    row, attempts = _delivery_and_attempts(db)
    assert row.state == "pending"  # retried later, like any failed attempt
    assert len(attempts) == 1
    assert attempts[0].status is None
    assert attempts[0].error is not None
    assert attempts[0].error.startswith("TLS certificate not trusted: ")
    assert "issuer" in attempts[0].error  # "unable to get local issuer certificate"
    assert row.last_error == attempts[0].error


@pytest.mark.usefixtures("queued")
def test_a_certificate_for_another_name_is_refused_even_from_a_trusted_authority(
    client: TestClient, db: Database, tenant: Tenant, authority: TestAuthority
) -> None:
    with receiver(tls=authority.issue("hooks.example.com")) as hooks:
        create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        _new_contact_delivered_by(db, client, tenant, policy(ca_file=str(authority.ca_file)))
        assert hooks.requests == []
    _row, attempts = _delivery_and_attempts(db)
    assert [a.error for a in attempts] == [
        "TLS certificate not trusted: IP address mismatch, certificate is not valid for '127.0.0.1'."
    ]
