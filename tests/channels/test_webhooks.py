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
    ChannelRules,
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    ParsedWebhook,
    SendResult,
    StatusUpdate,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Message
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import callbacks_written

pytestmark = pytest.mark.usefixtures("immediate_queue")
SECRET = "hook-secret"


class SignedHookAdapter:
    """Shaped like Meta's: X-Signature = hex HMAC-SHA256(secret, raw body); GET handshake echoes a challenge."""

    type: ClassVar[str] = "signedhook"
    rules: ClassVar[ChannelRules] = ChannelRules(delivery_receipts=True)

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        if request.method == "GET":
            if request.query.get("verify_token") != channel.secrets["secret"]:
                raise WebhookRejected("bad verify token")
            return
        expected = hmac.new(channel.secrets["secret"].encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-signature", ""), expected):
            raise WebhookRejected("bad signature")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        if request.method == "GET":
            return ParsedWebhook(reply=request.query.get("challenge", ""))
        data = json.loads(request.body)
        return ParsedWebhook(
            messages=[
                InboundMessage(
                    sender_id=m["from"], provider_message_id=m["id"], text=m["text"], display_name=m.get("name")
                )
                for m in data.get("messages", [])
            ],
            statuses=[
                StatusUpdate(provider_message_id=s["id"], status=DeliveryStatus(s["status"]), reason=s.get("reason"))
                for s in data.get("statuses", [])
            ],
        )

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"out-{message.message_id}")

    def public_config(self, channel: Channel) -> dict[str, Any]:
        return {}

    def clean_config(self, config: dict[str, Any], secrets: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(config), {"secret": SECRET}

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        return True


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
