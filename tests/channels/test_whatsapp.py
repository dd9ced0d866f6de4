"""The WhatsApp Cloud API adapter beyond the contract: every documented message kind, statuses with
Meta's reasons, one contact per customer across phone number and BSUID, error codes, request bodies."""

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from tertulia.channels.adapters.whatsapp import WhatsAppAdapter, graph_error, outbound_body, signature
from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    DeliveryStatus,
    MessageType,
    OutboundMessage,
    PermanentError,
    ProviderTemplate,
    TransientError,
    WebhookRequest,
)
from tertulia.channels.service import do_create_channel
from tertulia.cli import app
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations.models import Message, StoredFile
from tertulia.conversations.outbox import HEADROOM, process_outbound
from tertulia.events.models import EventRecord
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit import storage
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.users.models import Role
from tests.channels import whatsapp_samples as wa
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

ADAPTER = WhatsAppAdapter()
CONFIG = {"phone_number_id": wa.PHONE_NUMBER_ID, "business_account_id": wa.BUSINESS_ACCOUNT_ID}
SECRETS = {"access_token": "EAAG-test-token", "app_secret": wa.APP_SECRET}
NO_GRAPH = "http://127.0.0.1:9"


def _channel() -> Channel:
    config, secrets = ADAPTER.clean_config(CONFIG, SECRETS)
    return Channel(
        id=5, workspace_id=1, type="whatsapp", name="Ventas", key="k", active=True, config=config, secrets=secrets
    )


def _parse(data: dict[str, Any]) -> Any:
    raw = wa.body(data)
    channel = _channel()
    request = WebhookRequest(
        method="POST",
        url="https://tertulia.example/webhooks/k",
        headers={"x-hub-signature-256": f"sha256={signature(channel, raw)}"},
        query={},
        body=raw,
    )
    ADAPTER.verify_webhook(channel, request)
    return ADAPTER.parse_webhook(channel, request)


def test_the_documented_signature_vector() -> None:
    secret, raw, expected = wa.SIGNATURE_VECTOR
    channel = _channel()
    channel.secrets = {**channel.secrets, "app_secret": secret}
    assert signature(channel, raw) == expected == hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("sample", "kind", "text", "payload"),
    [
        (wa.TEXT, MessageType.TEXT, "Does it come in another color?", {}),
        (wa.IMAGE, MessageType.IMAGE, "¿Así?", {"media": "image"}),
        (wa.STICKER, MessageType.IMAGE, None, {"media": "sticker"}),
        (wa.VOICE, MessageType.AUDIO, None, {"media": "audio"}),
        (wa.DOCUMENT, MessageType.FILE, "Mi factura", {"media": "document"}),
        (wa.LOCATION, MessageType.LOCATION, "Zócalo, Plaza de la Constitución, CDMX", {}),
        (wa.CONTACTS, MessageType.CONTACT, "Ana Gómez", {"contact": {"phone_number": "+52 55 1234 5678"}}),
        (wa.BUTTON_REPLY, MessageType.POSTBACK, "title", {"postback": {"data": "callback_data", "title": "title"}}),
        (wa.LIST_REPLY, MessageType.POSTBACK, "Talla M", {"postback": {"data": "size_m", "source": "whatsapp_list"}}),
        (wa.TEMPLATE_BUTTON, MessageType.POSTBACK, "Seguir pedido", {"postback": {"data": "TRACK_42"}}),
        (wa.REACTION, MessageType.TEXT, "👍", {"reaction": {"provider_message_id": "wamid.ours", "emoji": "👍"}}),
        (wa.UNSUPPORTED, MessageType.UNSUPPORTED, None, {"unsupported": "unsupported"}),
    ],
)
def test_every_message_kind_is_kept(
    sample: dict[str, Any], kind: MessageType, text: str | None, payload: dict[str, Any]
) -> None:
    (message,) = _parse(sample).messages
    assert (message.type, message.text) == (kind, text)
    for key, value in payload.items():
        found = message.payload[key]
        assert found == value if not isinstance(value, dict) else {k: found[k] for k in value} == value
    assert message.sender_id
    assert message.sent_at is not None


def test_media_keep_meta_s_media_id_for_download() -> None:
    (document,) = _parse(wa.DOCUMENT).messages
    assert document.attachments == [
        {
            "provider_file": {
                "media_id": "999",
                "content_type": "application/pdf",
                "sha256": "ghi=",
                "name": "factura.pdf",
            }
        }
    ]
    (voice,) = _parse(wa.VOICE).messages
    assert voice.payload["voice"] is True
    assert voice.attachments[0]["provider_file"]["content_type"] == "audio/ogg"


def test_profile_name_phone_and_quoted_message() -> None:
    (message,) = _parse(wa.BUTTON_REPLY).messages
    assert (message.display_name, message.phone, message.sender_id) == ("Pablo Ruiz", "+972987654321", "972987654321")
    assert message.payload["reply_to"] == {"provider_message_id": "wamid.asked", "from": "1122334455667"}


def test_another_number_of_the_business_account_is_not_this_channel() -> None:
    other = wa.envelope(
        contacts=wa.CUSTOMER, messages=wa.IMAGE["entry"][0]["changes"][0]["value"]["messages"], phone_number_id="999"
    )
    assert _parse(other).messages == []


def test_statuses_with_meta_s_reason() -> None:
    (delivered,) = _parse(wa.DELIVERED).statuses
    assert (delivered.provider_message_id, delivered.status, delivered.reason) == (
        "wamid.xyzxyz",
        DeliveryStatus.DELIVERED,
        None,
    )
    (failed,) = _parse(wa.FAILED).statuses
    assert (failed.status, failed.reason) == (
        DeliveryStatus.FAILED,
        "(#131026) Message undeliverable: Message Undeliverable.",
    )
    (played,) = _parse(wa.status("wamid.voice", "played")).statuses
    assert played.status == DeliveryStatus.READ


def test_handshake_needs_subscribe_and_the_verify_token() -> None:
    channel = _channel()
    token = channel.secrets["verify_token"]
    good = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"}
    request = WebhookRequest(method="GET", url="u", headers={}, query=good, body=b"")
    ADAPTER.verify_webhook(channel, request)
    assert ADAPTER.parse_webhook(channel, request).reply == "42"
    for query in (
        {**good, "hub.mode": "unsubscribe"},
        {**good, "hub.verify_token": token + "x"},
        {"hub.challenge": "42"},
    ):
        with pytest.raises(Exception, match="verify token"):
            ADAPTER.verify_webhook(channel, WebhookRequest(method="GET", url="u", headers={}, query=query, body=b""))


# ----- one contact per customer ------------------------------------------------------------------


def _connected(db: Database, tenant: Tenant, **config: str) -> Channel:
    """A WhatsApp channel of the tenant, as a manager connects it."""
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "whatsapp", "Ventas", {**CONFIG, **config}, SECRETS)
        session.expunge(channel)
    return channel


def _post(client: TestClient, channel: Channel, data: dict[str, Any]) -> None:
    raw = wa.body(data)
    response = client.post(
        f"/webhooks/{channel.key}", content=raw, headers={"X-Hub-Signature-256": f"sha256={signature(channel, raw)}"}
    )
    assert response.status_code == 200, response.text
    callbacks_written(client.app.state.db)


@pytest.mark.usefixtures("immediate_queue")
def test_a_username_customer_is_one_contact_and_their_phone_joins_it_later(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = _connected(db, tenant)
    _post(client, channel, wa.BSUID_ONLY)
    _post(client, channel, wa.BSUID_AND_PHONE)
    _post(
        client,
        channel,
        wa.envelope(
            contacts=[{"profile": {"name": "Lupita"}, "wa_id": "5215598765432"}],
            messages=[
                {
                    "from": "5215598765432",
                    "id": "wamid.bsuid3",
                    "timestamp": "1764950200",
                    "type": "text",
                    "text": {"body": "otra vez"},
                }
            ],
        ),
    )
    with db.transaction(write=False) as session:
        contacts = set(session.scalars(select(Message.contact_id).where(Message.channel_id == channel.id)))
        assert len(contacts) == 1
        identities = {
            row.external_id: row.contact_id
            for row in session.scalars(select(ContactIdentity).where(ContactIdentity.channel == "whatsapp"))
        }
    assert identities == {wa.BSUID: contacts.pop(), "5215598765432": identities[wa.BSUID]}


@pytest.mark.usefixtures("immediate_queue")
def test_ids_of_two_different_contacts_are_never_joined_silently(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = _connected(db, tenant)
    _post(client, channel, wa.BSUID_ONLY)  # contact A: the BSUID
    phone_only = wa.envelope(
        contacts=[{"profile": {"name": "Otra"}, "wa_id": "5215598765432"}],
        messages=[
            {
                "from": "5215598765432",
                "id": "wamid.p1",
                "timestamp": "1764950000",
                "type": "text",
                "text": {"body": "hola"},
            }
        ],
    )
    _post(client, channel, phone_only)  # contact B: the phone
    _post(client, channel, wa.BSUID_AND_PHONE)  # both ids: the phone's contact answers, nothing is linked
    with db.transaction(write=False) as session:
        owners = {
            row.external_id: row.contact_id
            for row in session.scalars(select(ContactIdentity).where(ContactIdentity.channel == "whatsapp"))
        }
        last = session.scalar(select(Message).where(Message.provider_message_id == "wamid.bsuid2"))
        assert last is not None
    assert owners[wa.BSUID] != owners["5215598765432"]
    assert last.contact_id == owners["5215598765432"]


# ----- sending ------------------------------------------------------------------------------------


def _response(status: int, data: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(data).encode(), request=httpx.Request("POST", "http://graph.test"))


@pytest.mark.parametrize(
    ("status", "code", "error", "retry_after"),
    [
        (400, 131047, PermanentError, None),
        (400, 131026, PermanentError, None),
        (400, 131048, PermanentError, None),
        (400, 132001, PermanentError, None),
        (401, 190, PermanentError, None),
        (400, 130429, TransientError, 1.0),
        (400, 131056, TransientError, 6.0),
        (400, 80007, TransientError, 60.0),
        (500, 131000, TransientError, None),
        (503, 999999, TransientError, None),
    ],
)
def test_graph_errors_are_retried_or_final_by_code(
    status: int, code: int, error: type, retry_after: float | None
) -> None:
    mapped = graph_error(_response(status, wa.graph_error(code, f"(#{code}) Something")))
    assert type(mapped) is error
    assert mapped.code == f"whatsapp:{code}"
    assert mapped.reason == f"(#{code}) Something"
    if isinstance(mapped, TransientError):
        assert mapped.retry_after == retry_after


def test_an_error_body_that_is_not_graph_s_is_judged_by_status() -> None:
    assert isinstance(graph_error(httpx.Response(502, text="<html>Bad gateway</html>")), TransientError)
    assert isinstance(graph_error(httpx.Response(404, text="not here")), PermanentError)


def _outbound(**changes: Any) -> OutboundMessage:
    base: dict[str, Any] = {
        "message_id": 1,
        "idempotency_key": "k",
        "recipient_id": "16505551234",
        "type": MessageType.TEXT,
        "text": "Hi!",
        "attachments": [],
        "payload": {},
    }
    return OutboundMessage(**{**base, **changes})


def test_request_bodies_follow_the_cloud_api() -> None:
    assert outbound_body(_outbound(reply_to_provider_id="wamid.Q", payload={"preview_url": True})) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "text",
        "text": {"body": "Hi!", "preview_url": True},
        "context": {"message_id": "wamid.Q"},
    }
    template = {"name": "order_update", "language": {"code": "es_MX"}, "components": []}
    assert outbound_body(_outbound(payload={"template": template}))["template"] == template
    image = outbound_body(
        _outbound(type=MessageType.IMAGE, text="foto", attachments=[{"url": "https://x.example/p.jpg"}])
    )
    assert (image["type"], image["image"]) == ("image", {"link": "https://x.example/p.jpg", "caption": "foto"})
    document = outbound_body(
        _outbound(type=MessageType.FILE, text=None, attachments=[{"provider_media_id": "55", "filename": "f.pdf"}])
    )
    assert document["document"] == {"id": "55", "filename": "f.pdf"}
    by_username = outbound_body(_outbound(recipient_id=wa.BSUID))
    assert by_username["recipient"] == wa.BSUID
    assert "to" not in by_username


def test_connecting_needs_the_ids_and_secrets_and_generates_a_verify_token() -> None:
    config, secrets = ADAPTER.clean_config({**CONFIG, "api_base_url": "http://127.0.0.1:9/"}, SECRETS)
    assert config["api_base_url"] == "http://127.0.0.1:9"
    assert config["api_version"] == "v26.0"
    assert len(secrets["verify_token"]) >= 24
    for bad_config, bad_secrets, field in [
        ({**CONFIG, "phone_number_id": "abc"}, SECRETS, "config.phone_number_id"),
        ({"phone_number_id": wa.PHONE_NUMBER_ID}, SECRETS, "config.business_account_id"),
        ({**CONFIG, "api_version": "26"}, SECRETS, "config.api_version"),
        ({**CONFIG, "api_base_url": "ftp://x"}, SECRETS, "config.api_base_url"),
        (CONFIG, {"app_secret": "s"}, "secrets.access_token"),
        (CONFIG, {"access_token": "t", "app_secret": " "}, "secrets.app_secret"),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            ADAPTER.clean_config(bad_config, bad_secrets)
        assert field in (refused.value.details or {})


def test_connecting_through_the_api_stores_the_secrets_and_never_shows_them_again(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    manager = sign_in(db, tenant, Role.MANAGER).headers
    # Nothing listens at this API address: the template sync that follows a connect fails at once.
    body = {"type": "whatsapp", "name": "Ventas MX", "config": {**CONFIG, "api_base_url": NO_GRAPH}, "secrets": SECRETS}
    created = client.post("/api/v1/channels", headers=manager, json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert len(answer["verify_token"]) >= 24  # generated: to paste into Meta's dashboard, shown once
    assert "access_token" not in answer
    assert "app_secret" not in answer
    shown = client.get(f"/api/v1/channels/{answer['id']}", headers=manager).json()
    assert shown["secrets"] == {"access_token": "set", "app_secret": "set", "verify_token": "set"}
    assert "EAAG-test-token" not in json.dumps(shown)
    missing = client.post("/api/v1/channels", headers=manager, json={**body, "secrets": {"app_secret": "s"}})
    assert missing.status_code == 422
    assert "secrets.access_token" in missing.json()["error"]["details"]


# ----- the 24-hour window and templates, against a local Graph API -----------------------------


def _six_seconds_later() -> datetime:
    """The outbox's clock once the pace to one customer (a message every 6 s, with the outbox's
    headroom) lets the next one go."""
    return utcnow() + timedelta(seconds=6 * (1 + HEADROOM))


@contextmanager
def graph_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local stand-in for graph.facebook.com: the send endpoint records each request's path and JSON
    body and answers as Meta does (§3.3); `GET /v26.0/{media id}` answers the media's URL on this
    server and `GET /media/{media id}` its bytes, only with the access token (§3.2); other media ids
    are unknown (Graph's 404 error)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, data: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.headers.get("authorization") != "Bearer EAAG-test-token":
                self._answer(401, json.dumps(wa.graph_error(190, "Invalid OAuth access token")).encode())
            elif self.path == "/v26.0/999":
                media = {"url": f"http://127.0.0.1:{self.server.server_address[1]}/media/999", "file_size": 9}
                self._answer(200, json.dumps({**media, "mime_type": "application/pdf", "id": "999"}).encode())
            elif self.path == "/media/999":
                self._answer(200, b"%PDF-1.4\n", "application/pdf")
            else:
                self._answer(404, json.dumps(wa.graph_error(100, "Unsupported get request")).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            received.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
            data = json.dumps(wa.accepted(f"wamid.sent{len(received)}")).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("immediate_queue")
def test_outside_the_window_only_templates_go_out(client: TestClient, db: Database, tenant: Tenant) -> None:
    with graph_api() as (base, received):
        channel = _connected(db, tenant, api_base_url=base)
        _post(client, channel, wa.TEXT)  # Sheena writes: the window opens
        with db.transaction(write=False) as session:
            contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
        url = f"/api/v1/contacts/id:{contact_id}/messages"
        inside = {"channel_id": channel.id, "message": {"type": "text", "text": "¡Sí, en azul!"}}
        assert client.post(url, headers=tenant.headers, json=inside).status_code == 201
        image = {"channel_id": channel.id, "message": {"type": "image", "attachments": []}}
        refused_media = client.post(url, headers=tenant.headers, json=image)
        assert refused_media.status_code == 422
        assert refused_media.json()["error"]["details"] == {"message.attachments": "a image message needs a file"}
        # A day and an hour later.
        with db.transaction() as session:
            session.execute(
                update(Contact).where(Contact.id == contact_id).values(last_incoming_at=utcnow() - timedelta(hours=25))
            )
            # The template as a sync of the account stored it (channels/message_templates.py).
            stored = session.get(Channel, channel.id)
            assert stored is not None
            body = [{"type": "BODY", "text": "Hola {{1}}, tu pedido va en camino."}]
            order_update = ProviderTemplate("1", "order_update", "es_MX", "UTILITY", "APPROVED", "POSITIONAL", body)
            do_store_templates(session, stored, [order_update])
        late = client.post(url, headers=tenant.headers, json=inside)
        assert late.status_code == 422
        assert late.json()["error"]["code"] == "reply_window_closed"
        template = {
            "name": "order_update",
            "language": {"code": "es_MX"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Sheena"}]}],
        }
        sent = client.post(
            url,
            headers=tenant.headers,
            json={"channel_id": channel.id, "message": {"type": "whatsapp_template", "template": template}},
        )
        assert sent.status_code == 201, sent.text
        # One message every 6 s to the same customer: the template waits its turn behind the text.
        assert process_outbound(db, sent.json()["id"], _six_seconds_later).state == "sent"
        wrong = {"channel_id": channel.id, "message": {"type": "whatsapp_template", "text": "no template"}}
        assert client.post(url, headers=tenant.headers, json=wrong).status_code == 422
    assert [r["body"]["type"] for r in received] == ["text", "template"]  # nothing sent for the refusals
    first, second = received
    assert first["path"] == f"/v26.0/{wa.PHONE_NUMBER_ID}/messages"
    assert first["auth"] == "Bearer EAAG-test-token"
    assert first["body"]["to"] == "16505551234"
    assert first["body"]["text"]["body"] == "¡Sí, en azul!"
    assert second["body"]["template"] == template
    with db.transaction(write=False) as session:
        statuses = list(session.scalars(select(Message.status).where(Message.provider_message_id.like("wamid.sent%"))))
    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.SENT]


@pytest.mark.usefixtures("immediate_queue")
def test_statuses_of_one_callback_are_applied_together_and_only_forward(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with graph_api() as (base, _received):
        channel = _connected(db, tenant, api_base_url=base)
        _post(client, channel, wa.TEXT)
        with db.transaction(write=False) as session:
            contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
        for later, text in enumerate(("uno", "dos")):
            body = {"channel_id": channel.id, "message": {"type": "text", "text": text}}
            posted = client.post(f"/api/v1/contacts/id:{contact_id}/messages", headers=tenant.headers, json=body)
            assert posted.status_code == 201
            if later:  # one message every 6 s to the same customer: the second waits its turn
                assert process_outbound(db, posted.json()["id"], _six_seconds_later).state == "sent"
    statuses = [
        {"id": "wamid.sent1", "status": "read", "timestamp": "1764950001", "recipient_id": "16505551234"},
        {"id": "wamid.sent1", "status": "delivered", "timestamp": "1764950000", "recipient_id": "16505551234"},
        {
            "id": "wamid.sent2",
            "status": "failed",
            "timestamp": "1764950002",
            "recipient_id": "16505551234",
            "errors": [{"code": 131026, "title": "Message undeliverable"}],
        },
        {"id": "wamid.someone-else", "status": "delivered", "timestamp": "1764950003", "recipient_id": "1"},
    ]
    _post(client, channel, wa.envelope(statuses=statuses))
    with db.transaction(write=False) as session:
        found = {
            m.provider_message_id: (m.status, m.status_reason)
            for m in session.scalars(select(Message).where(Message.provider_message_id.like("wamid.sent%")))
        }
        moves = list(session.scalars(select(EventRecord.payload).where(EventRecord.type == "message.status_changed")))
    assert found == {
        "wamid.sent1": (DeliveryStatus.READ, None),
        "wamid.sent2": (DeliveryStatus.FAILED, "(#131026) Message undeliverable"),
    }
    # sent on sending (twice), then read and failed from the callback: the late "delivered" moved nothing.
    assert sorted(p["status"] for p in moves) == ["failed", "read", "sent", "sent"]


@pytest.mark.usefixtures("immediate_queue")
def test_a_customer_s_file_is_fetched_from_meta_and_kept_as_ours(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with graph_api() as (base, _received):
        channel = _connected(db, tenant, api_base_url=base)
        _post(client, channel, wa.DOCUMENT)
        _post(client, channel, wa.STICKER)  # media id 777: Meta no longer has it
    with db.transaction(write=False) as session:
        document = session.scalar(select(Message).where(Message.provider_message_id == "wamid.document1"))
        sticker = session.scalar(select(Message).where(Message.provider_message_id == "wamid.sticker1"))
        assert document is not None
        assert sticker is not None
        (kept,) = document.attachments
        stored = session.get(StoredFile, kept["file_id"])
        assert stored is not None
    assert (kept["name"], kept["content_type"], kept["size"]) == ("factura.pdf", "application/pdf", 9)
    assert stored.conversation_id == document.conversation_id
    assert storage.get_storage().get(stored.storage_key) == b"%PDF-1.4\n"
    assert document.text == "Mi factura"
    (missing,) = sticker.attachments  # kept, marked unavailable with Meta's reason: never dropped
    assert "Unsupported get request" in missing["unavailable"]


def test_the_cli_connects_a_whatsapp_number_with_its_secrets_kept_encrypted(
    db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    monkeypatch.setenv("WA_TOKEN", "EAAG-from-env")
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        args = ["channel", "connect", "whatsapp", "--workspace", tenant.name, "--name", "Ventas MX"]
        ids = [
            "--set",
            f"phone_number_id={wa.PHONE_NUMBER_ID}",
            "--set",
            f"business_account_id={wa.BUSINESS_ACCOUNT_ID}",
            "--set",
            f"api_base_url={NO_GRAPH}",
        ]
        secrets = ["--set-from-env", "access_token=WA_TOKEN", "--set", f"app_secret={wa.APP_SECRET}"]
        done = CliRunner().invoke(app, [*args, *ids, *secrets])
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert result["callback_url"].startswith("https://crm.example/webhooks/")
        missing = CliRunner().invoke(app, [*args, *ids])
        assert missing.exit_code == 1
        assert "secrets.access_token" in missing.output
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    with db.transaction(write=False) as session:
        channel = session.get(Channel, result["id"])
        assert channel is not None
        assert channel.secrets["access_token"] == "EAAG-from-env"
        assert "access_token" not in channel.config
        stored = session.execute(text("SELECT secrets FROM channels WHERE id = :id"), {"id": channel.id}).scalar_one()
    assert "EAAG-from-env" not in str(stored)
