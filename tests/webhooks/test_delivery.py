"""Outgoing webhooks end to end: the event log's consumer writes deliveries, workers send them to a
real local HTTP receiver, signed, retried, in order per contact, surviving a worker's death."""

import ipaddress
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from tertulia.app import create_app
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.conversations.inbound import do_receive
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.mail.models import OutgoingEmail
from tertulia.users.models import User
from tertulia.webhooks import delivery, reasons
from tertulia.webhooks.addresses import is_public
from tertulia.webhooks.fanout import CONSUMER, fan_out
from tertulia.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.broadcasts.support import customers_write, draft, fake_channel
from tests.conftest import Tenant
from tests.conversations.support import make_webchat
from tests.fakes import fake_provider
from tests.web.helpers import email_of
from tests.webhooks.support import create_endpoint, policy, private_addresses_allowed, receiver


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, webhooks_allow_private=True)


@pytest.fixture
def allowed() -> Iterator[None]:
    with private_addresses_allowed():
        yield


@pytest.fixture
def queued(client: TestClient) -> Iterator[None]:
    """Nothing runs inline: the test feeds the consumer and runs the workers itself. (After the app
    started, so it runs no queue consumer of its own.)"""
    queue.huey.immediate = False
    yield
    queue.huey.flush()


def _deliveries(db: Database, endpoint_id: int) -> list[WebhookDelivery]:
    with db.transaction(write=False) as session:
        query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        return list(session.scalars(query.order_by(WebhookDelivery.id)))


def _attempts(db: Database, delivery_id: int) -> list[WebhookAttempt]:
    with db.transaction(write=False) as session:
        query = select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
        return list(session.scalars(query.order_by(WebhookAttempt.id)))


def _contact(client: TestClient, tenant: Tenant, name: str) -> dict[str, Any]:
    response = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": name})
    assert response.status_code == 201, response.text
    contact: dict[str, Any] = response.json()
    return contact


def _fan_out(db: Database, timeout: float = 15.0) -> None:
    """Feed the webhooks consumer every event written so far (another dispatcher may hold its lease
    for a moment: wait for its position to reach the newest event)."""
    newest = dispatcher.newest_event_id(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.dispatch(db, [CONSUMER])
        status = {s.name: s for s in dispatcher.consumer_status(db)}[CONSUMER.name]
        if status.last_event_id >= newest:
            return
        time.sleep(0.02)
    raise AssertionError("the webhooks consumer did not catch up")


def _drain(db: Database, rules: delivery.Policy, until: float = 30.0) -> None:
    """Feed the consumer and run one worker until nothing is open."""
    deadline = time.monotonic() + until
    _fan_out(db)
    while time.monotonic() < deadline:
        delivery.deliver_until_idle(db, rules, budget_seconds=2)
        with db.transaction(write=False) as session:
            open_rows = session.scalar(
                select(WebhookDelivery.id).where(WebhookDelivery.state.in_(("pending", "sending"))).limit(1)
            )
        if open_rows is None:
            return
        time.sleep(0.02)
    raise AssertionError("deliveries still open")


@pytest.mark.usefixtures("allowed")
def test_a_new_contact_reaches_the_endpoint_signed_as_standard_webhooks_verifies(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created", "contact.tag_added"])
        assert endpoint["secret"].startswith("whsec_")
        contact = _contact(client, tenant, "Ana")  # the queue runs inline: dispatched and sent after commit
        assert len(hooks.requests) == 1
    request = hooks.requests[0]
    # The reference library verifies the signature (and the timestamp's freshness) and returns the JSON.
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "contact.created"
    assert payload["id"] == request.headers["webhook-id"]
    assert payload["workspace_id"] == tenant.workspace_id
    shown = client.get(f"/api/v1/contacts/id:{contact['id']}", headers=tenant.headers).json()
    assert payload["data"]["contact"] == shown  # the API's own shape
    # A wrong secret does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 32).verify(request.body, request.headers)


@pytest.mark.usefixtures("allowed")
def test_after_a_rotation_both_secrets_verify_for_a_day(client: TestClient, db: Database, tenant: Tenant) -> None:
    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        rotated = client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=tenant.headers)
        assert rotated.status_code == 200
        assert rotated.headers["cache-control"] == "no-store"
        _contact(client, tenant, "Ana")
    request = hooks.requests[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(rotated.json()["secret"]).verify(request.body, request.headers)
    Webhook(endpoint["secret"]).verify(request.body, request.headers)
    # The secret is never read back.
    assert "secret" not in client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant.headers).json()


@pytest.mark.usefixtures("queued")
def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt_exactly_once(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks:
        hooks.script += [500, 500, 500]
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        _contact(client, tenant, "Ana")
        _drain(db, policy())
    assert [r.status for r in hooks.requests] == [500, 500, 500, 200]
    assert len({r.headers["webhook-id"] for r in hooks.requests}) == 1  # one message, retried
    (row,) = _deliveries(db, endpoint["id"])
    assert row.state == "delivered"
    assert row.attempts == 4
    assert [(a.attempt, a.status) for a in _attempts(db, row.id)] == [(1, 500), (2, 500), (3, 500), (4, 200)]
    assert "receiver says no" in (_attempts(db, row.id)[0].response_excerpt or "")
    # The delivery log in the API.
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=tenant.headers).json()
    assert log["items"][0]["state"] == "delivered"
    assert [a["status"] for a in log["items"][0]["attempt_log"]] == [500, 500, 500, 200]
    assert log["items"][0]["body"]["type"] == "contact.created"


@pytest.mark.usefixtures("queued")
def test_a_worker_killed_between_the_send_and_its_record_loses_nothing(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    def killed(_delivery_id: int) -> None:
        raise SystemError("worker killed after the receiver answered")

    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        _contact(client, tenant, "Ana")
        _fan_out(db)
        delivery.AFTER_SEND.append(killed)
        try:
            with pytest.raises(SystemError):
                delivery.deliver_until_idle(db, policy())
        finally:
            delivery.AFTER_SEND.remove(killed)
        (row,) = _deliveries(db, endpoint["id"])
        assert row.state == "sending"  # the receiver has it; our record does not say so
        # A restarted worker leaves it alone while the dead one's lease lasts ...
        assert delivery.deliver_until_idle(db, policy()) == 0
        # ... and sends it again once the lease has expired.
        with db.transaction() as session:
            session.execute(update(WebhookDelivery).values(lease_until=utcnow() - timedelta(seconds=1)))
        assert delivery.deliver_until_idle(db, policy()) == 1
    (row,) = _deliveries(db, endpoint["id"])
    assert row.state == "delivered"
    # At least once: the receiver saw the same webhook-id twice and can drop the second.
    assert [r.headers["webhook-id"] for r in hooks.requests] == [row.message_id, row.message_id]


@pytest.mark.usefixtures("queued")
def test_each_contacts_events_arrive_in_order_with_two_workers(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    failures = {"first": 0}

    def answer(body: Any) -> int | None:
        # The first event of the first contact fails twice: that contact's later events must wait.
        first = body["data"]["contact"]["first_name"] == "C0" and body["type"] == "contact.created"
        if first and failures["first"] < 2:
            failures["first"] += 1
            return 500
        return None

    with receiver() as hooks:
        hooks.answer = answer
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created", "contact.tag_added"])
        contacts = [_contact(client, tenant, f"C{i}") for i in range(4)]
        for round_ in range(3):
            for contact in contacts:
                response = client.post(
                    f"/api/v1/contacts/id:{contact['id']}/tags", headers=tenant.headers, json={"tags": [f"t{round_}"]}
                )
                assert response.status_code == 200
        _fan_out(db)
        rows = _deliveries(db, endpoint["id"])
        assert len(rows) == 16
        errors: list[BaseException] = []

        def work() -> None:
            try:
                rules = policy()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and len(hooks.answered()) < 16:
                    delivery.deliver_batch(db, rules, dispatcher.new_owner(), limit=3)
                    time.sleep(0.005)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert not errors, errors
    assert len(hooks.answered()) == 16
    by_contact: dict[int, list[int]] = {}
    for request in hooks.requests:
        body = request.json
        event_id = int(body["id"].removeprefix("evt_"))
        by_contact.setdefault(body["data"]["contact"]["id"], []).append(event_id)
    for contact_id, sequence in by_contact.items():
        # Retries repeat an id; a later event never arrives before an earlier one was answered 200.
        assert sequence == sorted(sequence), (contact_id, sequence)
    first = by_contact[contacts[0]["id"]]
    assert first[:3] == [first[0]] * 3  # sent three times before its next event went out


@pytest.mark.usefixtures("queued")
def test_fan_out_fed_an_event_twice_writes_one_delivery(client: TestClient, db: Database, tenant: Tenant) -> None:
    endpoint = create_endpoint(client, tenant.headers, "http://127.0.0.1:9/hooks", ["contact.created"])
    _contact(client, tenant, "Ana")
    with db.transaction(write=False) as session:
        event = session.scalars(select(EventRecord).where(EventRecord.type == "contact.created")).one()
        session.expunge(event)
    assert fan_out(db, event) == 1
    fan_out(db, event)
    assert len(_deliveries(db, endpoint["id"])) == 1


def test_special_addresses_are_not_public() -> None:
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ):
        assert not is_public(ipaddress.ip_address(address)), address
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert is_public(ipaddress.ip_address(address)), address


def test_private_urls_are_refused_when_not_allowed(db: Database, tenant: Tenant) -> None:
    app = create_app(Settings(api_rate_limit_per_minute=100_000), db)
    with TestClient(app, raise_server_exceptions=False) as strict:
        for url in (
            "http://127.0.0.1:8080/x",
            "https://10.0.0.5/x",
            "https://localhost/x",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "http://example.com/x",
            "ftp://example.com/x",
        ):
            response = strict.post(
                "/api/v1/webhooks", headers=tenant.headers, json={"url": url, "events": ["contact.created"]}
            )
            assert response.status_code == 422, (url, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_failed", url
            assert "url" in error["details"], url
        bad_events = strict.post(
            "/api/v1/webhooks", headers=tenant.headers, json={"url": "https://example.com/x", "events": ["nope"]}
        )
        assert bad_events.status_code == 422
        assert "events" in bad_events.json()["error"]["details"]


@pytest.mark.usefixtures("queued")
def test_a_name_resolving_to_a_private_address_is_refused_at_send_time(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks:
        # Saved while allowed (or a name whose DNS answer changed since): `localhost` resolves to loopback.
        url = hooks.url.replace("127.0.0.1", "localhost")
        endpoint = create_endpoint(client, tenant.headers, url, ["contact.created"])
        _contact(client, tenant, "Ana")
        _fan_out(db)
        assert delivery.deliver_until_idle(db, policy(allow_private=False, retry_base_seconds=60)) == 1
        assert hooks.requests == []
        (row,) = _deliveries(db, endpoint["id"])
        assert row.state == "pending"
        assert "private or local address" in (row.last_error or "")
        # Allowed, the same delivery goes to the address that was checked.
        with db.transaction() as session:
            session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
        assert delivery.deliver_until_idle(db, policy(allow_private=True)) == 1
        assert len(hooks.requests) == 1
        assert hooks.requests[0].headers["host"].startswith("localhost:")


@pytest.mark.usefixtures("queued")
def test_an_endpoint_failing_again_and_again_is_disabled_and_the_owners_are_mailed(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks:
        hooks.answer = lambda _body: 503
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        for i in range(3):
            _contact(client, tenant, f"C{i}")
        _fan_out(db)
        rules = policy(disable_after_failures=5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            delivery.deliver_until_idle(db, rules, budget_seconds=1)
            with db.transaction(write=False) as session:
                row = session.get(WebhookEndpoint, endpoint["id"])
                assert row is not None
                if not row.enabled:
                    break
            time.sleep(0.02)
        sent_before = len(hooks.requests)
        delivery.deliver_until_idle(db, rules)  # a disabled endpoint gets nothing
        assert len(hooks.requests) == sent_before
    with db.transaction(write=False) as session:
        row = session.get(WebhookEndpoint, endpoint["id"])
        assert row is not None
        assert not row.enabled
        assert row.disabled_reason is not None
        assert row.disabled_reason.endswith("failed deliveries in a row"), [
            (a.status, a.error) for d in _deliveries(db, endpoint["id"]) for a in _attempts(db, d.id)
        ]
        mails = list(session.scalars(select(OutgoingEmail)))
    owner = email_of(db, tenant.owner_id)
    assert [m.to_address for m in mails] == [owner]  # owners only, once
    assert hooks.url in mails[0].body
    assert f"/settings/webhooks/{endpoint['id']}" in mails[0].body
    # Its waiting deliveries are kept; enabling it again sends them.
    assert any(d.state == "pending" for d in _deliveries(db, endpoint["id"]))
    shown = client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant.headers).json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"]


@pytest.mark.usefixtures("queued")
def test_an_endpoint_failing_for_the_whole_window_is_disabled(client: TestClient, db: Database, tenant: Tenant) -> None:
    with receiver() as hooks:
        hooks.answer = lambda _body: 500
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        _contact(client, tenant, "Ana")
        _fan_out(db)
        with db.transaction() as session:
            session.execute(update(User).where(User.id == tenant.owner_id).values(language="es"))
            session.execute(
                update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(hours=25), consecutive_failures=2)
            )
        delivery.deliver_until_idle(db, policy())
    with db.transaction(write=False) as session:
        row = session.get(WebhookEndpoint, endpoint["id"])
        assert row is not None
        assert not row.enabled
        assert row.disabled_reason == "every delivery failed for 24 hours"
        mails = list(session.scalars(select(OutgoingEmail)))
    # The owner reads Spanish: the email tells the reason in Spanish too.
    assert [m.subject for m in mails] == ["Se desactivó un webhook de Tertulia"]
    assert "Motivo: Todas las entregas fallaron durante 24 horas\n" in mails[0].body


@pytest.mark.usefixtures("queued")
def test_a_delivery_past_the_retry_window_fails_and_stops_holding_the_contact_back(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks:
        hooks.script += [500]
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created", "contact.tag_added"])
        contact = _contact(client, tenant, "Ana")
        client.post(f"/api/v1/contacts/id:{contact['id']}/tags", headers=tenant.headers, json={"tags": ["vip"]})
        _fan_out(db)
        first, second = _deliveries(db, endpoint["id"])
        with db.transaction() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == first.id)
                .values(first_attempt_at=utcnow() - timedelta(hours=25))
            )
        delivery.deliver_until_idle(db, policy())
        delivery.deliver_until_idle(db, policy())
    first, second = _deliveries(db, endpoint["id"])
    assert first.state == "failed"
    assert second.state == "delivered"


@pytest.mark.usefixtures("allowed")
def test_test_events_and_redelivery(client: TestClient, db: Database, tenant: Tenant) -> None:
    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        sent = client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=tenant.headers)
        assert sent.status_code == 202, sent.text
        assert len(hooks.requests) == 1
        assert hooks.requests[0].json["type"] == "webhook.test"
        Webhook(endpoint["secret"]).verify(hooks.requests[0].body, hooks.requests[0].headers)
        delivery_id = sent.json()["id"]
        again = client.post(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries/{delivery_id}/redeliver", headers=tenant.headers
        )
        assert again.status_code == 202
        deadline = time.monotonic() + 10  # nudges are coalesced: this one may run a moment later
        while len(hooks.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.headers["webhook-id"] for r in hooks.requests] == [sent.json()["message_id"]] * 2
    shown = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries/{delivery_id}", headers=tenant.headers).json()
    assert shown["state"] == "delivered"
    assert [a["attempt"] for a in shown["attempt_log"]] == [1, 2]


@pytest.mark.usefixtures("allowed")
def test_an_incoming_message_carries_the_apis_message_and_conversation_shapes(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    with receiver() as hooks:
        create_endpoint(client, tenant.headers, hooks.url, ["message.received", "conversation.opened"])
        with db.transaction() as session:
            row = session.get(Channel, channel.id)
            assert row is not None
            received = do_receive(
                session, row, InboundMessage(sender_id="visitor-1", provider_message_id="m-1", text="Hola")
            )
            conversation_id, contact_id = received.conversation.id, received.conversation.contact_id
        deadline = time.monotonic() + 10
        while len(hooks.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    by_type = {r.json["type"]: r.json for r in hooks.requests}
    assert set(by_type) == {"message.received", "conversation.opened"}
    messages = client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=tenant.headers).json()
    assert by_type["message.received"]["data"]["message"] == messages["items"][-1]
    conversation = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()
    sent_conversation = by_type["conversation.opened"]["data"]["conversation"]
    assert sent_conversation["id"] == conversation["id"]
    assert set(sent_conversation) <= set(conversation)
    assert by_type["message.received"]["data"]["contact"]["id"] == contact_id
    # Both are about one contact, in the order they happened.
    assert [r.json["type"] for r in hooks.requests] == ["conversation.opened", "message.received"]


@pytest.mark.usefixtures("allowed")
def test_a_real_queue_consumer_dispatches_fans_out_and_retries(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    queue.huey.immediate = False
    queue.huey.flush()
    consumer = queue.start_consumer(2)
    try:
        with receiver() as hooks:
            hooks.script += [503, 503]
            endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
            _contact(client, tenant, "Ana")
            deadline = time.monotonic() + 60  # generous: retries are scheduled tasks on a loaded machine
            while not hooks.answered() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        consumer.stop(graceful=True)
        queue.huey.flush()
    (row,) = _deliveries(db, endpoint["id"])
    assert [r.status for r in hooks.requests] == [503, 503, 200], (
        row.state,
        row.next_attempt_at,
        utcnow(),
        row.attempts,
    )
    assert row.state == "delivered"
    assert row.attempts == 3


@pytest.mark.usefixtures("allowed", "fakehttp_adapter")
def test_a_broadcast_s_start_and_end_reach_an_endpoint_with_its_counts(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks, fake_provider() as provider:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["broadcast.started", "broadcast.completed"])
        channel = fake_channel(db, tenant, provider.url)
        customers_write(db, channel, ["+5215500000001", "+5215500000002"])
        broadcast_id = draft(
            db, tenant, name="Aviso", audience="all", channel_id=channel.id, content={"default": {"text": "Hola"}}
        )
        base = f"/api/v1/broadcasts/{broadcast_id}"
        assert client.post(f"{base}/schedule", headers=tenant.headers, json={}).status_code == 200
        assert client.get(base, headers=tenant.headers).json()["status"] == "completed"
        _fan_out(db)
        delivery.deliver_until_idle(db, policy(), budget_seconds=5)
    bodies = [Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in hooks.requests]
    assert [b["type"] for b in bodies] == ["broadcast.started", "broadcast.completed"]
    assert {b["data"]["broadcast"]["broadcast_id"] for b in bodies} == {broadcast_id}
    assert bodies[0]["data"]["broadcast"]["recipients"] == 2
    assert bodies[1]["data"]["broadcast"]["status"] == "completed"


@pytest.mark.usefixtures("allowed")
def test_a_deleted_contact_reaches_the_endpoint_as_it_was(client: TestClient, db: Database, tenant: Tenant) -> None:
    contact = _contact(client, tenant, "Ana")
    tagged = client.post(f"/api/v1/contacts/id:{contact['id']}/tags", headers=tenant.headers, json={"tags": ["VIP"]})
    before = tagged.json()
    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.deleted"])
        assert client.delete(f"/api/v1/contacts/id:{contact['id']}", headers=tenant.headers).status_code == 204
        # The tagging's trailing dispatch may hold the consumer's lease when the deletion's own runs:
        # the event is then sent a moment later, not at once.
        _drain(db, policy())
        assert len(hooks.requests) == 1
    payload = Webhook(endpoint["secret"]).verify(hooks.requests[0].body, hooks.requests[0].headers)
    assert payload["type"] == "contact.deleted"
    assert payload["data"]["contact"] == before  # with its tags, in the API's shape
    with db.transaction(write=False) as session:
        [event] = session.scalars(select(EventRecord).where(EventRecord.type == "contact.deleted"))
        assert event.contact_id == contact["id"]


@pytest.mark.usefixtures("allowed", "queued")
def test_the_delivery_log_forgets_finished_deliveries_after_its_retention(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with receiver() as hooks:
        endpoint = create_endpoint(client, tenant.headers, hooks.url, ["contact.created"])
        for name in ("Ana", "Beto", "Carla"):
            _contact(client, tenant, name)
        _drain(db, policy())
    old, recent, waiting = _deliveries(db, endpoint["id"])
    assert old.state == recent.state == waiting.state == "delivered"
    with db.transaction() as session:
        long_ago = utcnow() - timedelta(days=31)
        aged = update(WebhookDelivery).where(WebhookDelivery.id.in_([old.id, waiting.id]))
        session.execute(aged.values(created_at=long_ago))
        # One of the old ones is still waiting for a retry: it stays whatever its age.
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == waiting.id).values(state="pending"))
    assert delivery.prune_log(db, 30, batch=1) == 1
    assert [d.id for d in _deliveries(db, endpoint["id"])] == [recent.id, waiting.id]
    assert _attempts(db, old.id) == []
    assert len(_attempts(db, recent.id)) == 1
    assert delivery.prune_log(db, 30) == 0


@given(st.integers(min_value=1, max_value=10**9), st.floats(min_value=0.01, max_value=99_999))
def test_every_reason_built_is_read_back_and_told_in_spanish(failures: int, hours: float) -> None:
    assert reasons.parse(reasons.in_a_row(failures)) == ("in_a_row", str(failures))
    assert reasons.in_language(reasons.in_a_row(failures), "es") == f"{failures} entregas fallidas seguidas"
    key, number = reasons.parse(reasons.for_hours(hours)) or ("", "")
    assert (key, float(number)) == ("for_hours", float(f"{hours:g}"))
    assert reasons.in_language(reasons.BY_PERSON, "es") == "Lo desactivó una persona."
    assert reasons.in_language("the address stopped resolving", "es") == "the address stopped resolving"
    assert reasons.in_language(reasons.in_a_row(failures), "en") == reasons.in_a_row(failures)
    assert reasons.in_language(reasons.for_hours(24), "en") == "Every delivery failed for 24 hours"
