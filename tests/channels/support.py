"""What the provider channel tests share (Twilio, Vonage, Bird, Telegram): connecting a channel
through the API as a manager, the channel's messages, and a reply through the API."""

from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.conversations.models import Message
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.conversations.support import sign_in


def connect_response(
    client: TestClient, db: Database, tenant: Tenant, channel_type: str, config: dict[str, Any], secrets: dict[str, Any]
) -> httpx.Response:
    """`POST /api/v1/channels` as a manager: the provider is asked, then the channel written."""
    return client.post(
        "/api/v1/channels",
        json={"type": channel_type, "config": config, "secrets": secrets},
        headers=sign_in(db, tenant, Role.MANAGER).headers,
    )


def connect(
    client: TestClient, db: Database, tenant: Tenant, channel_type: str, config: dict[str, Any], secrets: dict[str, Any]
) -> dict[str, Any]:
    """A channel connected through the API; its JSON (id, callback_url...)."""
    response = connect_response(client, db, tenant, channel_type, config, secrets)
    assert response.status_code == 201, response.text
    return dict(response.json())


def channel_messages(db: Database, channel_id: int) -> list[Message]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(Message).where(Message.channel_id == channel_id).order_by(Message.id)))


def send_reply(client: TestClient, db: Database, tenant: Tenant, conversation_id: int, text: str) -> Message:
    """An agent's reply through the API (201), as stored."""
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": text}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    with db.transaction(write=False) as session:
        found = session.get(Message, response.json()["id"])
        assert found is not None
        return found


def refused_reply(client: TestClient, tenant: Tenant, conversation_id: int, text: str) -> str:
    """A reply to a customer who opted out: refused when written (422 opted_out); its message."""
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": text}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "opted_out"
    return str(response.json()["error"]["message"])


def channel_events(db: Database, workspace_id: int) -> list[tuple[str, Any, Any]]:
    """The workspace's channel.* events in order: (type, fault, code)."""
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(EventRecord)
            .where(EventRecord.workspace_id == workspace_id, EventRecord.type.like("channel.%"))
            .order_by(EventRecord.id)
        )
        return [(row.type, row.payload["fault"], row.payload["code"]) for row in rows]
