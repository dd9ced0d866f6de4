"""Provider callbacks through /webhooks/{key}: signature over raw bytes, inbound dedupe, status order."""

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.channels import registry
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    DeliveryStatus,
    OutboundMessage,
    SendResult,
)
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Message
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, callbacks_written

pytestmark = pytest.mark.usefixtures("immediate_queue")
SECRET = "hook-secret"


class SignedHookAdapter(FakeHttpAdapter):
    """The fake provider's callbacks (shaped like Meta's: X-Signature = hex HMAC-SHA256(secret, raw
    body); a GET handshake echoes a challenge) under its own type and secret; sending always succeeds."""

    type: ClassVar[str] = "signedhook"

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"out-{message.message_id}")

    def clean_config(self, config: dict[str, Any], secrets: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(config), {"secret": SECRET}


@pytest.fixture(autouse=True)
def signedhook_adapter() -> Iterator[None]:
    with registry.registered(SignedHookAdapter()):
        yield


def _post(client: TestClient, key: str, payload: dict[str, Any], secret: str = SECRET) -> int:
    raw = json.dumps(payload, ensure_ascii=False).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    response = client.post(
        f"/webhooks/{key}", content=raw, headers={"X-Signature": signature, "Content-Type": "application/json"}
    )
    callbacks_written(client.app.state.db)
    return response.status_code


def test_webhook_inbound_dedupe_statuses_and_signature(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "signedhook", "Hook")
    handshake = client.get(f"/webhooks/{channel.key}", params={"verify_token": SECRET, "challenge": "1158201444"})
    assert handshake.text == "1158201444"
    assert client.get(f"/webhooks/{channel.key}", params={"verify_token": "nope"}).status_code == 403
    inbound = {"messages": [{"from": "5215512345678", "id": "wamid.A", "text": "Hola ñandú", "name": "Pablo Ruiz"}]}
    assert _post(client, channel.key, inbound) == 200
    assert _post(client, channel.key, inbound) == 200  # the provider retries
    assert _post(client, channel.key, inbound, secret="wrong") == 403
    # One bad message in a batch does not make the provider retry the good one forever.
    batch = {"messages": [{"from": "1", "id": "wamid.B", "text": "  "}, {"from": "1", "id": "wamid.C", "text": "ok"}]}
    assert _post(client, channel.key, batch) == 200
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Message.provider_message_id).order_by(Message.id))) == ["wamid.A", "wamid.C"]
    reply = client.post(
        f"/api/v1/contacts/id:{_contact_id(db)}/messages",
        headers=tenant.headers,
        json={"channel_id": channel.id, "message": {"type": "text", "text": "¡Hola Pablo!"}},
    )
    assert reply.status_code == 201, reply.text
    provider_id = f"out-{reply.json()['id']}"
    # Receipts arrive out of order; a late "delivered" and a "failed" after "read" change nothing.
    for status in ("read", "delivered", "failed"):
        assert _post(client, channel.key, {"statuses": [{"id": provider_id, "status": status, "reason": "x"}]}) == 200
    with db.transaction(write=False) as session:
        message = session.get(Message, reply.json()["id"])
        assert message is not None
        assert message.status == DeliveryStatus.READ
        assert message.status_reason is None
        assert session.scalar(select(func.count()).select_from(Message)) == 3


def _contact_id(db: Database) -> int:
    with db.transaction(write=False) as session:
        value = session.scalar(select(Message.contact_id).where(Message.provider_message_id == "wamid.A"))
        assert value is not None
        return int(value)
