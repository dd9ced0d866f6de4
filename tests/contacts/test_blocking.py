"""Blocking a contact, and ending one visitor's web-chat sessions.

A blocked contact's messages are not put into the inbox: no message row, no conversation opened or
reopened, no realtime event; what remains is a count on the contact and a `message.blocked` event.
Its web-chat visitors' tokens stop working at once (HTTP, an open socket, the kept token at
/session), and so do they after "end sessions", which does not block.
"""

import hashlib
import hmac
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.websockets import WebSocketDisconnect

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.contacts.models import Contact
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import Conversation, Message
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tertulia.web.context import LANGUAGE_COOKIE
from tests.conftest import Tenant
from tests.conversations.support import SHOP, make_webchat, new_visitor, widget_socket
from tests.fakes import immediate_queue
from tests.web.helpers import sign_in_as

__all__ = ["immediate_queue"]  # a fixture, used by name


def _contact(client: TestClient, tenant: Tenant, contact_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/contacts/id:{contact_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _events(db: Database, kind: str) -> list[EventRecord]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(EventRecord).where(EventRecord.type == kind).order_by(EventRecord.id)))


def _count(db: Database, model: Any) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_block_and_unblock_through_the_api(client: TestClient, db: Database, tenant: Tenant) -> None:
    contact = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"}).json()
    assert (contact["blocked"], contact["blocked_at"], contact["blocked_messages"]) == (False, None, 0)
    blocked = client.post(f"/api/v1/contacts/id:{contact['id']}/block", headers=tenant.headers)
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["blocked"] is True
    assert blocked.json()["blocked_at"] is not None
    # Again: nothing changes, nothing is recorded twice.
    assert client.post(f"/api/v1/contacts/id:{contact['id']}/block", headers=tenant.headers).status_code == 200
    [event] = _events(db, "contact.updated")
    assert event.payload["changes"] == [{"field": "blocked", "old": False, "new": True}]
    assert event.actor is not None
    assert event.actor.startswith("api:")
    unblocked = client.post(f"/api/v1/contacts/id:{contact['id']}/unblock", headers=tenant.headers)
    assert (unblocked.json()["blocked"], unblocked.json()["blocked_at"]) == (False, None)
    assert [e.payload["changes"][0]["new"] for e in _events(db, "contact.updated")] == [True, False]
    activity = client.get(f"/api/v1/contacts/id:{contact['id']}/activity", headers=tenant.headers).json()
    assert [(a["field"], a["new_value"]) for a in activity if a["field"] == "blocked"] == [
        ("blocked", False),
        ("blocked", True),
    ]


def test_a_blocked_contacts_messages_are_recorded_not_put_into_the_inbox(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        first = do_receive(
            session, stored, InboundMessage(sender_id=f"{channel.id}:u:42", provider_message_id="p-1", text="hola")
        )
        contact_id = first.contact.id
        assert first.conversation is not None
        conversation_id = first.conversation.id
    client.post(f"/api/v1/conversations/{conversation_id}/close", headers=tenant.headers, json={})
    assert client.post(f"/api/v1/contacts/id:{contact_id}/block", headers=tenant.headers).status_code == 200
    messages, conversations = _count(db, Message), _count(db, Conversation)

    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        inbound = InboundMessage(sender_id=f"{channel.id}:u:42", text="otra vez", provider_message_id="p-2")
        refused = do_receive(session, stored, inbound)
        assert (refused.blocked, refused.conversation, refused.duplicate) == (True, None, False)

    assert (_count(db, Message), _count(db, Conversation)) == (messages, conversations)
    with db.transaction(write=False) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        assert conversation.status.value == "closed"
    shown = _contact(client, tenant, contact_id)
    assert shown["blocked_messages"] == 1
    assert shown["last_blocked_at"] is not None
    [event] = _events(db, "message.blocked")
    assert event.contact_id == contact_id
    assert event.payload == {
        "contact_id": contact_id,
        "channel_id": channel.id,
        "provider_message_id": "p-2",
        "type": "text",
    }

    client.post(f"/api/v1/contacts/id:{contact_id}/unblock", headers=tenant.headers)
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        back = do_receive(
            session, stored, InboundMessage(sender_id=f"{channel.id}:u:42", provider_message_id="p-3", text="ya")
        )
        assert back.blocked is False
        assert back.conversation is not None
    assert _count(db, Message) == messages + 1


@pytest.mark.usefixtures("immediate_queue")
def test_blocking_revokes_the_visitors_tokens_at_once(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    visitor.say("hola")
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Contact.id))
    assert contact_id is not None
    with widget_socket(client, channel, visitor) as socket:
        assert client.post(f"/api/v1/contacts/id:{contact_id}/block", headers=tenant.headers).status_code == 200
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert (closed.value.code, closed.value.reason) == (4401, "session_ended")

    history = client.get(f"/widget/{channel.key}/messages", headers=visitor.headers)
    assert (history.status_code, history.json()["error"]["code"]) == (401, "session_ended")
    sent = client.post(
        f"/widget/{channel.key}/messages", headers=visitor.headers, json={"text": "x", "client_msg_id": "abcdefgh99"}
    )
    assert (sent.status_code, sent.json()["error"]["code"]) == (401, "session_ended")
    with client.websocket_connect(f"/widget/ws?key={channel.key}", headers={"origin": SHOP}) as socket:
        socket.send_json({"type": "auth", "token": visitor.access_token})
        with pytest.raises(WebSocketDisconnect) as refused:
            socket.receive_json()
        assert (refused.value.code, refused.value.reason) == (4401, "session_ended")
    # The kept token no longer names this visitor: /session starts a new one, with a new contact.
    again = client.post(f"/widget/{channel.key}/session", headers={"Origin": SHOP}, json={"token": visitor.token})
    assert again.status_code == 200, again.text
    fresh = new_visitor(client, channel, token=visitor.token)
    fresh.say("soy otro")
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 2
        assert session.scalar(select(func.count()).select_from(Message).where(Message.contact_id == contact_id)) == 1


@pytest.mark.usefixtures("immediate_queue")
def test_ending_sessions_without_blocking(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    visitor.say("hola")
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Contact.id))
    ended = client.post(f"/api/v1/contacts/id:{contact_id}/end-sessions", headers=tenant.headers)
    assert ended.status_code == 200, ended.text
    assert ended.json()["blocked"] is False
    history = client.get(f"/widget/{channel.key}/messages", headers=visitor.headers)
    assert (history.status_code, history.json()["error"]["code"]) == (401, "session_ended")
    # The visitor comes back as a new one (their kept token is spent too); the contact is not blocked.
    fresh = new_visitor(client, channel, token=visitor.token)
    fresh.say("hola de nuevo")
    assert _contact(client, tenant, contact_id)["blocked"] is False
    activity = client.get(f"/api/v1/contacts/id:{contact_id}/activity", headers=tenant.headers).json()
    assert [a["action"] for a in activity if a["action"] == "sessions_ended"] == ["sessions_ended"]


def test_a_verified_site_user_who_is_blocked_cannot_start_a_session(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant, identity_verification=True)
    with db.transaction(write=False) as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        secret = stored.secrets["identity_secret"]
    body = {"user_id": "cliente-7", "user_hash": hmac.new(secret.encode(), b"cliente-7", hashlib.sha256).hexdigest()}
    visitor = new_visitor(client, channel, **body)
    visitor.say("hola")
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Contact.id))
    client.post(f"/api/v1/contacts/id:{contact_id}/block", headers=tenant.headers)
    refused = client.post(f"/widget/{channel.key}/session", headers={"Origin": SHOP}, json=body)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "blocked")
    client.post(f"/api/v1/contacts/id:{contact_id}/unblock", headers=tenant.headers)
    back = new_visitor(client, channel, **body)
    back.say("de vuelta")
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 1


def test_blocked_is_a_filterable_attribute(client: TestClient, db: Database, tenant: Tenant) -> None:
    ids = [
        client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": name}).json()["id"]
        for name in ("Ana", "Luz", "Sol")
    ]
    client.post(f"/api/v1/contacts/id:{ids[1]}/block", headers=tenant.headers)

    def matching(operator: str) -> list[int]:
        condition = {"category": "contact_field", "field": "blocked", "operator": operator}
        body = {"filter": {"groups": [{"conditions": [condition]}]}}
        response = client.post("/api/v1/segments/preview", headers=tenant.headers, json=body)
        assert response.status_code == 200, response.text
        return sorted(contact["id"] for contact in response.json()["contacts"])

    assert matching("is_true") == [ids[1]]
    assert matching("is_false") == [ids[0], ids[2]]


@pytest.mark.parametrize(
    ("language", "block", "unblock", "notice"),
    [
        ("en", "Block contact", "Unblock", "its messages do not reach the inbox"),
        ("es", "Bloquear contacto", "Desbloquear", "sus mensajes no llegan a la bandeja de entrada"),
    ],
)
def test_the_contact_page_and_the_inbox_panel_block_and_unblock(
    client: TestClient, db: Database, tenant: Tenant, language: str, block: str, unblock: str, notice: str
) -> None:
    channel = make_webchat(db, tenant)
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        inbound = InboundMessage(sender_id=f"{channel.id}:v:abc", provider_message_id="p-1", text="hola")
        received = do_receive(session, stored, inbound)
        contact_id = received.contact.id
        assert received.conversation is not None
        conversation_id = received.conversation.id
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    page = client.get(f"/contacts/{contact_id}")
    assert block in page.text
    assert 'data-testid="end-sessions"' in page.text  # it has a web-chat identity
    blocked = client.post(f"/contacts/{contact_id}/block", data={"csrf_token": token}, follow_redirects=False)
    assert blocked.status_code == 303
    page = client.get(f"/contacts/{contact_id}")
    assert unblock in page.text
    assert notice in page.text
    panel = client.get(f"/messages/contacts/{contact_id}/panel", params={"conversation_id": conversation_id})
    assert 'data-testid="panel-unblock-contact"' in panel.text
    # The panel's button is posted by htmx: the answer sends the agent back to the conversation.
    inbox = f"http://testserver/messages?conversation={conversation_id}"
    headers = {"HX-Request": "true", "HX-Current-URL": inbox, "X-CSRF-Token": token}
    answered = client.post(f"/contacts/{contact_id}/unblock", headers=headers)
    assert answered.status_code == 204
    assert answered.headers["HX-Redirect"] == f"/messages?conversation={conversation_id}"
    assert _contact(client, tenant, contact_id)["blocked"] is False


def test_the_filter_panel_offers_blocked(client: TestClient, db: Database, tenant: Tenant) -> None:
    ids = [
        client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": name}).json()["id"]
        for name in ("Ana", "Luz")
    ]
    client.post(f"/api/v1/contacts/id:{ids[0]}/block", headers=tenant.headers)
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, "es")
    form = {"csrf_token": token, "g0.match": "all", "g0.c0.cat": "field:blocked", "g0.c0.op": "is_true"}
    counted = client.post("/contacts/filter/count", data=form)
    assert counted.status_code == 200, counted.text
    assert 'data-count="1"' in counted.text
    panel = client.post("/contacts/filter/panel", data=form)
    assert '<option value="field:blocked" selected>Bloqueado</option>' in panel.text
