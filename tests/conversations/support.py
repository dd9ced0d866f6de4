"""Shared helpers for the inbox tests: channels, sign-in, a fake provider over real HTTP."""

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
from fastapi.testclient import TestClient

from tertulia.channels.base import (
    ChannelRules,
    OutboundMessage,
    ParsedWebhook,
    PermanentError,
    SendResult,
    TransientError,
    WebhookRejected,
    WebhookRequest,
    register,
)
from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.sessions import SESSION_COOKIE, do_sign_in
from tests.conftest import Tenant

SHOP = "https://shop.example"


def make_webchat(db: Database, tenant: Tenant, **config: Any) -> Channel:
    with db.transaction() as session:
        return do_create_channel(session, tenant.actor(), "webchat", "Web chat", {"allowed_origins": [SHOP], **config})


@dataclass
class Visitor:
    client: TestClient
    key: str
    token: str
    counter: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Origin": SHOP}

    def say(self, text: str, client_msg_id: str | None = None) -> dict[str, Any]:
        self.counter += 1
        response = self.client.post(
            f"/widget/{self.key}/messages",
            headers=self.headers,
            json={"text": text, "client_msg_id": client_msg_id or f"msg-{id(self)}-{self.counter:04d}"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def history(self) -> list[dict[str, Any]]:
        response = self.client.get(f"/widget/{self.key}/messages", headers=self.headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def new_visitor(client: TestClient, channel: Channel, **body: Any) -> Visitor:
    response = client.post(f"/widget/{channel.key}/session", headers={"Origin": SHOP}, json=body)
    assert response.status_code == 200, response.text
    return Visitor(client, channel.key, response.json()["token"])


@dataclass
class Agent:
    user_id: int
    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.cookie}", "X-CSRF-Token": self.csrf}


def sign_in(db: Database, tenant: Tenant, role: Role = Role.AGENT) -> Agent:
    emails = {Role.OWNER: None, Role.MANAGER: "manager", Role.AGENT: "agent"}
    with db.transaction() as session:
        from tertulia.users.models import User

        user = session.get(
            User, {Role.OWNER: tenant.owner_id, Role.MANAGER: tenant.manager_id, Role.AGENT: tenant.agent_id}[role]
        )
        assert user is not None
        password = f"{emails[role] or 'owner'}-password"
        signed = do_sign_in(session, user.email, password, client_ip=None, workspace_id=tenant.workspace_id)
        return Agent(user.id, signed.token, signed.web_session.csrf_token)


# ----- a fake provider: a real local HTTP server that counts deliveries per idempotency key -----


@dataclass
class FakeProvider:
    url: str = ""
    deliveries: Counter[str] = field(default_factory=Counter)
    ids: dict[str, str] = field(default_factory=dict)
    # Scripted answers for the next calls: (status, body); then 200.
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, key: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls += 1
            if self.script:
                return self.script.pop(0)
            if key not in self.ids:
                self.deliveries[key] += 1
                self.ids[key] = f"prov-{len(self.ids) + 1}"
            return 200, {"id": self.ids[key]}


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            self.rfile.read(length)
            status, body = provider.handle(self.headers.get("idempotency-key", ""))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.url = f"http://127.0.0.1:{server.server_address[1]}/send"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


class FakeHttpAdapter:
    """A provider adapter the way a real one is written: HTTP out, errors mapped by status."""

    type: ClassVar[str] = "fakehttp"
    rules: ClassVar[ChannelRules] = ChannelRules(delivery_receipts=True)

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        raise WebhookRejected("no webhooks")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        raise WebhookRejected("no webhooks")

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        try:
            response = httpx.post(
                channel.config["url"],
                json={"to": message.recipient_id, "text": message.text},
                headers={"Idempotency-Key": message.idempotency_key},
                timeout=5,
            )
        except httpx.TransportError as exc:
            raise TransientError(str(exc)) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(response.json().get("error", "provider busy"), retry_after=0)
        if response.status_code >= 400:
            raise PermanentError(response.json().get("error", "rejected"), code=str(response.status_code))
        return SendResult(provider_message_id=response.json()["id"])

    def public_config(self, channel: Channel) -> dict[str, Any]:
        return {}

    def clean_config(self, config: dict[str, Any], secrets: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(config), dict(secrets)

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        return True


register(FakeHttpAdapter())


def fake_channel_with_contact(db: Database, tenant: Tenant, url: str) -> tuple[int, int]:
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "fakehttp", "Fake", {"url": url})
        contact = Contact(workspace_id=tenant.workspace_id, first_name="Luz", first_name_folded="luz", custom={})
        session.add(contact)
        session.flush()
        session.add(
            ContactIdentity(
                workspace_id=tenant.workspace_id,
                contact_id=contact.id,
                channel="fakehttp",
                external_id="+5215512345678",
            )
        )
        return channel.id, contact.id
