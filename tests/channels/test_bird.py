"""A Bird SMS channel end to end on both databases, against the local fake Bird
(tests/channels/fake_bird.py): connecting (API, CLI), signed webhooks (bad signatures stored
nowhere, repeats stored once), replies through the outbox with their statuses (forward only),
Bird's refusals and throttling, keywords; and the legacy MessageBird API with its JWT-signed
callbacks."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.cli import app
from tertulia.contacts.models import ContactIdentity
from tertulia.conversations.models import Message
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.channels.fake_bird import (
    ACCESS_KEY,
    CHANNEL,
    CUSTOMER,
    NUMBER,
    SIGNING_KEY,
    WORKSPACE,
    FakeBird,
    fake_bird,
    inbound,
    legacy_token,
    outbound_status,
    signature_headers,
)
from tests.channels.support import channel_messages, connect, send_reply
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

pytestmark = pytest.mark.usefixtures("immediate_queue")
SECRETS = {"access_key": ACCESS_KEY, "signing_key": SIGNING_KEY}


@pytest.fixture
def fake() -> Iterator[FakeBird]:
    with fake_bird() as server:
        yield server


def _connect(client: TestClient, db: Database, tenant: Tenant, fake: FakeBird, **config: Any) -> dict[str, Any]:
    secrets = config.pop("secrets", SECRETS)
    config = {
        "api_base_url": fake.url,
        "workspace_id": WORKSPACE,
        "channel_id": CHANNEL,
        "from_number": NUMBER,
        **config,
    }
    return connect(client, db, tenant, "bird", config, secrets)


def test_connecting_checks_the_access_key_and_names_the_channel(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeBird
) -> None:
    created = _connect(client, db, tenant, fake)
    assert created["name"] == "Tienda SMS"
    assert created["secrets"] == {"access_key": "set", "signing_key": "set"}
    manager = sign_in(db, tenant, Role.MANAGER).headers
    wrong = client.post(
        "/api/v1/channels",
        json={
            "type": "bird",
            "config": {"api_base_url": fake.url, "workspace_id": WORKSPACE, "channel_id": CHANNEL},
            "secrets": {**SECRETS, "access_key": "nope"},
        },
        headers=manager,
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"] == {"secrets.access_key": "Bird: Invalid access key"}
    missing = client.post(
        "/api/v1/channels",
        json={
            "type": "bird",
            "config": {"api_base_url": fake.url, "workspace_id": WORKSPACE, "channel_id": "other-1"},
            "secrets": SECRETS,
        },
        headers=manager,
    )
    assert missing.json()["error"]["details"] == {"config.channel_id": "Bird: The requested resource was not found"}
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 1


def test_the_cli_connects_as_the_page_does(
    db: Database, tenant: Tenant, fake: FakeBird, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    monkeypatch.setenv("BIRD_ACCESS_KEY", ACCESS_KEY)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        args = ["channel", "connect", "bird", "--workspace", tenant.name, "--set", f"api_base_url={fake.url}"]
        args += ["--set", f"workspace_id={WORKSPACE}", "--set", f"channel_id={CHANNEL}"]
        args += ["--set", f"signing_key={SIGNING_KEY}", "--set-from-env", "access_key=BIRD_ACCESS_KEY"]
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert result["callback_url"].startswith("https://crm.example/webhooks/")
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    with db.transaction(write=False) as session:
        channel = session.get(Channel, result["id"])
        assert channel is not None
        assert channel.secrets == SECRETS


def test_signed_webhooks_are_stored_once_and_forgeries_nowhere(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeBird
) -> None:
    channel = _connect(client, db, tenant, fake)
    url = channel["callback_url"]
    event = inbound("96a0b5fa-a986-453d-be5c-3117f989f025", "¿Tienen envío a Utrecht?")
    body = json.dumps(event).encode()
    forged = signature_headers(url, body, key="another-signing-key")
    assert client.post(url, content=body, headers=forged).status_code == 403
    other_url = signature_headers(url + "?x=1", body)
    assert client.post(url, content=body, headers=other_url).status_code == 403
    assert client.post(url, content=body + b" ", headers=signature_headers(url, body)).status_code == 403
    assert client.post(url, content=body).status_code == 403
    callbacks_written(db)
    assert channel_messages(db, channel["id"]) == []
    assert fake.deliver(client, url, event).status_code == 200
    assert fake.deliver(client, url, event).status_code == 200  # Bird retrying
    callbacks_written(db)
    [stored] = channel_messages(db, channel["id"])
    assert (stored.text, stored.provider_message_id) == (
        "¿Tienen envío a Utrecht?",
        "96a0b5fa-a986-453d-be5c-3117f989f025",
    )
    with db.transaction(write=False) as session:
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.contact_id == stored.contact_id))
        assert identity is not None
        assert (identity.channel, identity.external_id) == ("bird", CUSTOMER)


def test_replies_statuses_refusals_and_opt_outs(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeBird
) -> None:
    channel = _connect(client, db, tenant, fake, help_reply="Tienda: responde BAJA para darte de baja.")
    url = channel["callback_url"]
    assert fake.deliver(client, url, inbound("11111111-0000-4000-8000-000000000001", "Hola")).status_code == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    reply = send_reply(client, db, tenant, incoming.conversation_id, "¡Hola! Sí enviamos.")
    [sent] = fake.sent
    assert sent["receiver"] == {"contacts": [{"identifierValue": CUSTOMER}]}
    assert sent["body"] == {"type": "text", "text": {"text": "¡Hola! Sí enviamos."}}
    assert reply.provider_message_id == sent["id"]
    for status in ("delivered", "sent", "delivery_failed"):  # late ones change nothing
        assert fake.deliver(client, url, outbound_status(sent["id"], status, reason="Unreachable")).status_code == 200
        callbacks_written(db)
    with db.transaction(write=False) as session:
        stored = session.get(Message, reply.id)
        assert stored is not None
        assert stored.status == DeliveryStatus.DELIVERED
    fake.fail_next(422, {"code": "InvalidPayload", "message": "receiver is not reachable on this channel"})
    refused = send_reply(client, db, tenant, incoming.conversation_id, "Otra")
    assert (refused.status, refused.status_reason) == (
        DeliveryStatus.FAILED,
        "receiver is not reachable on this channel",
    )
    fake.fail_next(429, {"code": "TooManyRequests", "message": "rate limit exceeded"})
    waiting = send_reply(client, db, tenant, incoming.conversation_id, "Y otra")
    assert waiting.status == DeliveryStatus.PENDING
    assert fake.deliver(client, url, inbound("11111111-0000-4000-8000-000000000002", "AYUDA")).status_code == 200
    assert fake.deliver(client, url, inbound("11111111-0000-4000-8000-000000000003", "cancelar")).status_code == 200
    callbacks_written(db)
    help_answer = fake.sent[-1]
    assert help_answer["body"]["text"]["text"] == "Tienda: responde BAJA para darte de baja."
    count = len(fake.sent)
    refused = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages", json={"text": "Oferta"}, headers=tenant.headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "opted_out"
    assert "opted out" in refused.json()["error"]["message"]
    assert len(fake.sent) == count


def test_the_legacy_messagebird_api(client: TestClient, db: Database, tenant: Tenant, fake: FakeBird) -> None:
    channel = _connect(client, db, tenant, fake, api="legacy", workspace_id="", channel_id="")
    assert channel["name"] == "MessageBird"
    url = channel["callback_url"]
    # developers.messagebird.com/api/sms-messaging: a received message's parameters (forwarded by POST).
    params = {
        "id": "e8077d803532c0b5937c639b60216938",
        "recipient": NUMBER.lstrip("+"),
        "originator": CUSTOMER.lstrip("+"),
        "body": "This is an incoming message",
        "createdDatetime": "2016-05-03T14:26:57+00:00",
    }
    stale = legacy_token(url, b"something else")
    assert client.post(url, data=params, headers={"MessageBird-Signature-JWT": stale}).status_code == 403
    assert client.post(url, data=params).status_code == 403
    assert fake.deliver_legacy(client, url, params).status_code == 200
    assert fake.deliver_legacy(client, url, params).status_code == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    assert (incoming.text, incoming.provider_message_id) == ("This is an incoming message", params["id"])
    reply = send_reply(client, db, tenant, incoming.conversation_id, "Thanks!")
    [sent] = fake.sent
    assert (sent["recipients"], sent["originator"], sent["body"], sent["reportUrl"]) == (
        [CUSTOMER.lstrip("+")],
        NUMBER.lstrip("+"),
        "Thanks!",
        url,
    )
    report = {
        "id": sent["id"],
        "recipient": CUSTOMER.lstrip("+"),
        "status": "delivery_failed",
        "statusReason": "unknown subscriber",
        "statusErrorCode": "1",
    }
    assert fake.deliver_legacy(client, url, report).status_code == 200
    callbacks_written(db)
    with db.transaction(write=False) as session:
        stored = session.get(Message, reply.id)
        assert stored is not None
        assert (stored.status, stored.status_reason) == (
            DeliveryStatus.FAILED,
            "delivery_failed: unknown subscriber (1)",
        )
    fake.fail_next(
        422, {"errors": [{"code": 9, "description": "no (correct) recipients found", "parameter": "recipients"}]}
    )
    refused = send_reply(client, db, tenant, incoming.conversation_id, "Again")
    assert refused.status_reason == "no (correct) recipients found (recipients)"
