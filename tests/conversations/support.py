"""Shared helpers for the inbox tests: channels, visitors, sign-in, customers' messages. Fake
providers: tests/fakes.py."""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from tertulia.channels.adapters.webchat import Visitor as TokenClaims
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import StoredFile
from tertulia.kit.db import Database
from tertulia.kit.settings import get_settings
from tertulia.users.models import Role, User
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
    token: str  # the visitor token the widget keeps (sent only to /session)
    access_token: str  # what requests and the socket carry
    counter: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "Origin": SHOP}

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
    return Visitor(client, channel.key, response.json()["token"], response.json()["access_token"])


@contextmanager
def widget_socket(
    client: TestClient, channel: Channel, visitor: Visitor, origin: str = SHOP
) -> Iterator[WebSocketTestSession]:
    """The visitor's socket, past its auth frame (the token never goes in the URL)."""
    with client.websocket_connect(f"/widget/ws?key={channel.key}", headers={"origin": origin}) as socket:
        socket.send_json({"type": "auth", "token": visitor.access_token})
        ready = socket.receive_json()
        assert ready["type"] == "ready", ready
        yield socket


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
        user = session.get(
            User, {Role.OWNER: tenant.owner_id, Role.MANAGER: tenant.manager_id, Role.AGENT: tenant.agent_id}[role]
        )
        assert user is not None
        password = f"{emails[role] or 'owner'}-password"
        signed = do_sign_in(session, user.email, password, client_ip=None, workspace_id=tenant.workspace_id)
        return Agent(user.id, signed.token, signed.web_session.csrf_token)


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


def token_from_before(claims: TokenClaims) -> str:
    """A visitor token as versions before per-channel signing issued it (one key for the server)."""
    body = base64.urlsafe_b64encode(
        json.dumps(
            {"ch": claims.channel_id, "sub": claims.external_id, "exp": claims.expires_at}, separators=(",", ":")
        ).encode()
    )
    encoded = body.decode().rstrip("=")
    key = hmac.new(get_settings().resolved_secret_key().encode(), b"webchat-visitor-token", hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(hmac.new(key, encoded.encode(), hashlib.sha256).digest()).decode().rstrip("=")
    return f"{encoded}.{signature}"


def stored_image(db: Database, workspace_id: int, name: str = "promo.jpg") -> int:
    """A JPEG file row of the workspace, as an upload leaves it (its bytes are not needed: providers
    are sent its link, and the fakes do not fetch it); its id."""
    with db.transaction() as session:
        stored = StoredFile(
            workspace_id=workspace_id,
            storage_key=f"test/{workspace_id}/{name}",
            name=name,
            size=1234,
            content_type="image/jpeg",
        )
        session.add(stored)
        session.flush()
        return stored.id


def receive_customer_message(db: Database, channel_id: int, sender: str, message_id: str, text: str) -> int:
    """A customer's message arriving on the channel, as the provider would deliver it; the id of the
    conversation it lands in."""
    with db.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        received = do_receive(
            session, channel, InboundMessage(sender_id=sender, provider_message_id=message_id, text=text)
        )
        assert received.conversation is not None
        return received.conversation.id
