"""The adapter contract: what every channel adapter must do, as one set of tests.

Each adapter joins by adding an `AdapterCase` (tests/channels/test_contract.py): how to sign a
callback the way its provider does, sample callback bodies with the provider message ids they carry,
and, for adapters that call a provider, the config pointing `send` at a URL plus the provider's way of
refusing a message by policy. The tests then prove, for every adapter:

- a callback with a bad or missing signature is rejected (and, through the endpoint, answered 403
  and stored nowhere); where the signature covers the body, a changed body is rejected too (a
  provider with a shared secret header instead, like Telegram, sets `body_signed=False`);
- the handshake is answered (a provider without one rejects every GET);
- sample callbacks parse to messages with provider ids (and, through the endpoint, a callback posted
  twice stores each message once);
- `send` against a real local server (HTTP, or the adapter's own protocol: SMTP) maps 429 and 5xx
  to `TransientError` and a policy refusal to `PermanentError` carrying the provider's reason;
- a refusal of one recipient is that message's fault (the channel stays connected), and the
  provider's refusal of the channel's credentials is the channel's (`Fault.CREDENTIALS`);
- delivery statuses only move forward, whatever order the receipts arrive in.
"""

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelAdapter,
    ChannelError,
    DeliveryStatus,
    Fault,
    MessageType,
    OutboundMessage,
    PermanentError,
    TransientError,
    WebhookRejected,
    WebhookRequest,
    status_advances,
)
from tertulia.channels.service import do_create_channel
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.conversations.models import Direction, Message, SenderKind
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import callbacks_written

Headers = dict[str, str]
TEST_SERVER = "http://testserver"  # the host a TestClient's requests carry


@dataclass(frozen=True)
class Refusal:
    """How the provider answers a message it refuses by policy, and the reason we must record."""

    status: int
    body: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class AdapterCase:
    adapter: ChannelAdapter
    # Signing headers for a callback body, as the provider computes them.
    sign: Callable[[Channel, bytes], Headers]
    # A handshake: query parameters -> the body the provider expects back; None: the provider has
    # none, and a GET is refused.
    handshake: Callable[[Channel], tuple[dict[str, str], str]] | None
    # Sample callback bodies and the provider message ids each one carries ("{c}" = the channel id).
    samples: list[tuple[bytes, list[str]]]
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    # For adapters that call a provider: the config pointing `send` at `url`, and its refusal shape.
    send_config: Callable[[str], dict[str, Any]] | None = None
    refusal: Refusal | None = None
    # The provider's answer when it refuses the channel's credentials (an expired or revoked token, a
    # wrong key), as its documentation shows it; None where a test of its own covers it (email: the
    # SMTP login, tests/channels/test_email.py).
    credentials_refusal: tuple[int, dict[str, Any]] | None = None
    # A status callback body for (provider message id, status), for adapters with receipts; None for
    # a status the provider never reports.
    status_body: Callable[[str, DeliveryStatus], bytes | None] | None = None
    recipient_id: str = "recipient-1"
    # Whether the signature covers the body (HMAC) or is a shared secret sent with it (Telegram).
    body_signed: bool = True
    # The provider's error body for (HTTP status, description), its answer accepting a message and
    # the provider message id we must read from it.
    error_body: Callable[[int, str], dict[str, Any]] = lambda _status, text: {"error": text}
    accepted: tuple[dict[str, Any], str] = ({"id": "prov-1"}, "prov-1")
    # The seconds a 429 asks to wait, when the provider says (error_body(429, ...) carries it).
    retry_after: float | None = None
    # For providers that sign the URL they called with the body (Twilio): signing headers for
    # (channel, URL, body); `sign` is then unused.
    sign_url: Callable[[Channel, str, bytes], Headers] | None = None
    # A provider that is not an HTTP API (email's SMTP server): a real local server answering each
    # send with the next of the scripted (HTTP-like status, body) answers; yields what `send_config`
    # takes. None: `scripted_provider`, an HTTP server.
    provider: Callable[[list[tuple[int, dict[str, Any]]]], AbstractContextManager[str]] | None = None

    def signed(self, channel: Channel, body: bytes, url: str = "") -> Headers:
        if self.sign_url is not None:
            return self.sign_url(channel, url or CALLBACK_URL, body)
        return self.sign(channel, body)


CALLBACK_URL = "https://tertulia.example/cb"


def _channel(db: Database, tenant: Tenant, case: AdapterCase, config: dict[str, Any] | None = None) -> Channel:
    with db.transaction() as session:
        channel = do_create_channel(
            session, tenant.actor(), case.adapter.type, "Contract", {**case.config, **(config or {})}, case.secrets
        )
        session.expunge(channel)
        return channel


def _request(
    method: str, body: bytes = b"", headers: Headers | None = None, query: dict[str, str] | None = None
) -> WebhookRequest:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return WebhookRequest(method=method, url=CALLBACK_URL, headers=lowered, query=query or {}, body=body)


# ----- signatures and handshakes --------------------------------------------------------------


def test_bad_or_missing_signature_is_rejected(case: AdapterCase, db: Database, tenant: Tenant) -> None:
    channel = _channel(db, tenant, case)
    body, _ = case.samples[0]
    signed = case.signed(channel, body)
    case.adapter.verify_webhook(channel, _request("POST", body, signed))
    with pytest.raises(WebhookRejected):
        case.adapter.verify_webhook(channel, _request("POST", body))
    if case.body_signed:
        with pytest.raises(WebhookRejected):
            case.adapter.verify_webhook(channel, _request("POST", body + b" ", signed))  # not the signed bytes
    forged = {name: "0" * len(value) for name, value in signed.items()}
    with pytest.raises(WebhookRejected):
        case.adapter.verify_webhook(channel, _request("POST", body, forged))


def test_handshake_is_answered(case: AdapterCase, db: Database, tenant: Tenant) -> None:
    channel = _channel(db, tenant, case)
    if case.handshake is None:
        with pytest.raises(WebhookRejected):
            case.adapter.verify_webhook(channel, _request("GET", query={"challenge": "x"}))
        return
    query, expected = case.handshake(channel)
    request = _request("GET", query=query)
    case.adapter.verify_webhook(channel, request)
    assert case.adapter.parse_webhook(channel, request).reply == expected
    with pytest.raises(WebhookRejected):
        case.adapter.verify_webhook(channel, _request("GET", query={**query, **dict.fromkeys(query, "wrong")}))


def test_samples_parse_to_messages_with_provider_ids(case: AdapterCase, db: Database, tenant: Tenant) -> None:
    channel = _channel(db, tenant, case)
    for body, provider_ids in case.samples:
        request = _request("POST", body, case.signed(channel, body))
        case.adapter.verify_webhook(channel, request)
        parsed = case.adapter.parse_webhook(channel, request)
        assert [m.provider_message_id for m in parsed.messages] == [i.format(c=channel.id) for i in provider_ids]
        assert all(m.sender_id for m in parsed.messages)


# ----- the same through the callback endpoint --------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_callbacks_store_each_message_once_and_forgeries_nothing(
    case: AdapterCase, client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = _channel(db, tenant, case)
    body, provider_ids = case.samples[0]
    hook, named = f"/webhooks/{channel.key}", f"/channels/{channel.key}/callback"
    headers = {**case.signed(channel, body, f"{TEST_SERVER}{hook}"), "Content-Type": "application/json"}
    forged = {name: "0" * len(value) for name, value in headers.items() if name != "Content-Type"}
    assert client.post(hook, content=body, headers=forged).status_code == 403
    assert client.post(hook, content=body).status_code == 403
    assert client.post(hook, content=body, headers=headers).status_code == 200
    again = {**case.signed(channel, body, f"{TEST_SERVER}{named}"), "Content-Type": "application/json"}
    assert client.post(named, content=body, headers=again).status_code == 200
    if case.handshake is None:
        assert client.get(f"/channels/{channel.key}/callback", params={"challenge": "x"}).status_code == 403
    else:
        query, expected = case.handshake(channel)
        handshake = client.get(f"/channels/{channel.key}/callback", params=query)
        assert (handshake.status_code, handshake.text) == (200, expected)
    callbacks_written(db)
    assert callback_spool(db).waiting() == 0
    with db.transaction(write=False) as session:
        stored = list(session.scalars(select(Message.provider_message_id).where(Message.channel_id == channel.id)))
        assert sorted(stored) == sorted(i.format(c=channel.id) for i in provider_ids)


# ----- sending --------------------------------------------------------------------------------


@contextmanager
def scripted_provider(answers: list[tuple[int, dict[str, Any]]]) -> Iterator[str]:
    """A real HTTP server answering each POST with the next (status, JSON body)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            status, body = answers.pop(0) if answers else (200, {"id": "late"})
            data = json.dumps(body).encode()
            self.send_response(status)
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
        yield f"http://127.0.0.1:{server.server_address[1]}/send"
    finally:
        server.shutdown()
        server.server_close()


def _outbound(case: AdapterCase) -> OutboundMessage:
    return OutboundMessage(
        message_id=7,
        idempotency_key="tertulia-msg-7",
        recipient_id=case.recipient_id,
        type=MessageType.TEXT,
        text="hola",
        attachments=[],
        payload={},
    )


def test_send_maps_provider_errors(case: AdapterCase, db: Database, tenant: Tenant) -> None:
    if case.send_config is None or case.refusal is None:
        # No provider to call (web chat delivers over our own socket): sending cannot fail.
        channel = _channel(db, tenant, case)
        assert case.adapter.send(channel, _outbound(case)).provider_message_id
        return
    refusal = case.refusal
    answers = [(429, case.error_body(429, "slow down")), (503, case.error_body(503, "down"))]
    accepted, provider_id = case.accepted
    provider = case.provider or scripted_provider
    with provider([*answers, (refusal.status, refusal.body), (200, accepted)]) as url:
        channel = _channel(db, tenant, case, case.send_config(url))
        with pytest.raises(TransientError) as throttled:
            case.adapter.send(channel, _outbound(case))
        assert throttled.value.retry_after == case.retry_after
        with pytest.raises(TransientError):
            case.adapter.send(channel, _outbound(case))
        with pytest.raises(PermanentError) as refused:
            case.adapter.send(channel, _outbound(case))
        assert refused.value.reason == refusal.reason
        assert case.adapter.send(channel, _outbound(case)).provider_message_id == provider_id


def test_send_tells_a_broken_channel_from_a_refused_recipient(case: AdapterCase, db: Database, tenant: Tenant) -> None:
    if case.send_config is None or case.refusal is None:
        # No provider to call (web chat delivers over our own socket): nothing can refuse it.
        channel = _channel(db, tenant, case)
        assert case.adapter.send(channel, _outbound(case)).provider_message_id
        return
    answers = [(case.refusal.status, case.refusal.body)]
    if case.credentials_refusal is not None:
        answers.append(case.credentials_refusal)
    provider = case.provider or scripted_provider
    with provider(answers) as url:
        channel = _channel(db, tenant, case, case.send_config(url))
        with pytest.raises(PermanentError) as refused:
            case.adapter.send(channel, _outbound(case))
        assert (refused.value.fault, refused.value.channel_level) == (Fault.MESSAGE, False)
        if case.credentials_refusal is None:
            return
        with pytest.raises(ChannelError) as locked_out:
            case.adapter.send(channel, _outbound(case))
        assert (locked_out.value.fault, locked_out.value.channel_level) == (Fault.CREDENTIALS, True)


# ----- statuses -------------------------------------------------------------------------------


@pytest.mark.usefixtures("immediate_queue")
def test_statuses_only_move_forward(case: AdapterCase, client: TestClient, db: Database, tenant: Tenant) -> None:
    order = [DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ]
    for index, status in enumerate(order):
        assert all(status_advances(earlier, status) for earlier in order[:index])
        assert not any(status_advances(later, status) for later in order[index:])
        assert not status_advances(DeliveryStatus.FAILED, status)
    if case.status_body is None:
        assert not case.adapter.rules.delivery_receipts
        return
    channel = _channel(db, tenant, case)
    body, _ = case.samples[0]
    hook = f"/webhooks/{channel.key}"
    assert (
        client.post(hook, content=body, headers=case.signed(channel, body, f"{TEST_SERVER}{hook}")).status_code == 200
    )
    callbacks_written(db)
    with db.transaction() as session:
        incoming = session.scalars(select(Message).where(Message.channel_id == channel.id)).first()
        assert incoming is not None
        sent = Message(
            workspace_id=incoming.workspace_id,
            conversation_id=incoming.conversation_id,
            contact_id=incoming.contact_id,
            channel_id=channel.id,
            direction=Direction.OUTGOING,
            sender_kind=SenderKind.API,
            type=MessageType.TEXT,
            text="hola",
            attachments=[],
            payload={},
            provider_message_id="prov-9",
            status=DeliveryStatus.SENT,
            attempts=1,
        )
        session.add(sent)
        session.flush()
        sent_id = sent.id
    # Receipts arrive out of order: a late "delivered" and a "failed" after "read" change nothing.
    for status in (DeliveryStatus.READ, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
        receipt = case.status_body("prov-9", status)
        if receipt is None:
            continue  # a status this provider never reports (Messenger has no failure receipts)
        request = _request("POST", receipt, case.signed(channel, receipt))
        parsed = case.adapter.parse_webhook(channel, request).statuses
        # The message by its id, or by a watermark (Messenger: everything sent to the customer until then).
        assert parsed
        assert all(s.status == status for s in parsed)
        assert any(s.provider_message_id == "prov-9" or (s.up_to is not None and s.recipient_id) for s in parsed)
        response = client.post(hook, content=receipt, headers=case.signed(channel, receipt, f"{TEST_SERVER}{hook}"))
        assert response.status_code == 200
        callbacks_written(db)
    with db.transaction(write=False) as session:
        stored = session.get(Message, sent_id)
        assert stored is not None
        # The furthest receipt the provider has (SMS has no read receipts): a later failure changes nothing.
        furthest = next(s for s in (DeliveryStatus.READ, DeliveryStatus.DELIVERED) if case.status_body("prov-9", s))
        assert (stored.status, stored.status_reason) == (furthest, None)
