"""Live delivery over WebSockets: visitor -> agent inbox, agent reply -> visitor, with permissions."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tertulia.channels.models import Channel
from tertulia.kit.db import Database
from tertulia.kit.sockets import MAX_FRAME_CHARS
from tertulia.users.models import Role
from tertulia.workspaces.service import do_update_workspace, get_workspace
from tests.conftest import Tenant
from tests.conversations.support import Agent, Visitor, make_webchat, new_visitor, sign_in, widget_socket

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _next(socket: WebSocketTestSession, wanted: str) -> dict[str, Any]:
    """The next frame of type `wanted`, skipping others (bounded, so a bug fails instead of hanging)."""
    for _ in range(20):
        frame: dict[str, Any] = socket.receive_json()
        if frame["type"] == wanted:
            return frame
    raise AssertionError(f"no {wanted} frame")


@contextmanager
def _inbox_and_widget(
    client: TestClient, agent: Agent, channel: Channel, visitor: Visitor
) -> Iterator[tuple[WebSocketTestSession, WebSocketTestSession]]:
    """An agent's inbox socket (past its hello: subscribed) and the visitor's widget socket."""
    with (
        client.websocket_connect("/ws", headers={"cookie": agent.headers["Cookie"]}) as inbox,
        widget_socket(client, channel, visitor) as widget,
    ):
        assert inbox.receive_json()["type"] == "hello"
        yield inbox, widget


def test_visitor_and_agent_see_each_other_live(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    visitor = new_visitor(client, channel, name="Ana")
    with _inbox_and_widget(client, manager, channel, visitor) as (inbox, widget):
        visitor.say("¿Hay alguien?")
        created = _next(inbox, "message.created")
        assert created["data"]["message"]["text"] == "¿Hay alguien?"
        cid = created["conversation_id"]
        # The visitor's socket echoes its own message (other tabs), then the agent's reply.
        assert _next(widget, "message.created")["message"]["text"] == "¿Hay alguien?"
        client.post(f"/api/v1/conversations/{cid}/comments", headers=manager.headers, json={"text": "interno"})
        reply = client.post(
            f"/api/v1/conversations/{cid}/messages",
            headers=manager.headers,
            json={"text": "Hola {{contact.first_name}}"},
        )
        assert reply.status_code == 201, reply.text
        frame = _next(widget, "message.created")
        assert frame["message"] == {
            "id": reply.json()["id"],
            "direction": "outgoing",
            "type": "text",
            "text": "Hola Ana",
            "attachments": [],
            "created_at": reply.json()["created_at"],
        }
        status = _next(inbox, "message.status")
        assert status["data"] == {"message_id": reply.json()["id"], "status": "sent", "reason": None}


def test_agent_socket_gets_only_conversations_they_may_see(client: TestClient, db: Database, tenant: Tenant) -> None:
    """An agent sees unassigned chats (to pick them up) and their own, never a colleague's."""
    channel = make_webchat(db, tenant)
    agent = sign_in(db, tenant, Role.AGENT)
    first, second = new_visitor(client, channel), new_visitor(client, channel)
    with client.websocket_connect("/ws", headers={"cookie": agent.headers["Cookie"]}) as inbox:
        assert inbox.receive_json()["type"] == "hello"
        first.say("sin asignar")
        assert _next(inbox, "message.created")["data"]["message"]["text"] == "sin asignar"
        conversations = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"]
        taken = next(c for c in conversations if c["last_message_preview"] == "sin asignar")
        client.post(
            f"/api/v1/conversations/{taken['id']}/assign", headers=tenant.headers, json={"user_id": tenant.owner_id}
        )
        # The agent learns it left the unassigned pool, then hears nothing more of it.
        assert _next(inbox, "conversation.assigned")["conversation_id"] == taken["id"]
        first.say("ya es del dueño")
        second.say("para mí")
        frame = _next(inbox, "message.created")
        assert frame["data"]["message"]["text"] == "para mí"
        mine = frame["conversation_id"]
        client.post(f"/api/v1/conversations/{mine}/assign", headers=agent.headers, json={"user_id": agent.user_id})
        second.say("ya es mía")
        frames = [inbox.receive_json()]
        while not (frames[-1]["type"] == "message.created" and frames[-1]["data"]["message"]["text"] == "ya es mía"):
            frames.append(inbox.receive_json())
        assert taken["id"] not in {f["conversation_id"] for f in frames}
        listed = client.get("/api/v1/conversations", headers=agent.headers).json()["items"]
        assert [c["id"] for c in listed] == [mine]


def test_sockets_refuse_strangers(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    with pytest.raises(WebSocketDisconnect) as no_cookie, client.websocket_connect("/ws") as socket:
        socket.receive_json()
    assert no_cookie.value.code == 4401
    with (
        pytest.raises(WebSocketDisconnect) as other_site,
        client.websocket_connect(f"/widget/ws?key={channel.key}", headers={"origin": "https://evil.example"}) as socket,
    ):
        socket.receive_json()
    assert other_site.value.code == 4403


def test_visitor_socket_sends_messages_once_and_reports_errors(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    visitor = new_visitor(client, channel, name="Eva")
    with _inbox_and_widget(client, manager, channel, visitor) as (inbox, widget):
        widget.send_json({"type": "message", "text": "por el socket", "client_msg_id": "sock-0001"})
        ack = _next(widget, "ack")
        assert ack["client_msg_id"] == "sock-0001"
        assert ack["duplicate"] is False
        assert ack["message"]["text"] == "por el socket"
        assert _next(inbox, "message.created")["data"]["message"]["id"] == ack["message"]["id"]
        # A resend after a lost ack is answered with the original, and stored once.
        widget.send_json({"type": "message", "text": "por el socket", "client_msg_id": "sock-0001"})
        again = _next(widget, "ack")
        assert (again["message"]["id"], again["duplicate"]) == (ack["message"]["id"], True)
        # The contact is typing: agents who may see the conversation are told.
        widget.send_json({"type": "typing"})
        typing = _next(inbox, "typing")
        assert typing["data"] == {"contact": True}
        assert typing["conversation_id"] == _next_created_conversation(client, tenant)
        widget.send_json({"type": "message", "text": "", "client_msg_id": "sock-0002"})
        error = _next(widget, "error")
        assert error["client_msg_id"] == "sock-0002"
        assert error["error"]["code"] == "validation_failed"
        assert "text" in error["error"]["details"]
        widget.send_text("not json")
        assert _next(widget, "error")["error"]["code"] == "invalid_frame"
        widget.send_json({"type": "ping"})
        assert _next(widget, "pong") == {"type": "pong"}
    assert [m["text"] for m in visitor.history()] == ["por el socket"]


def _next_created_conversation(client: TestClient, tenant: Tenant) -> int:
    [conversation] = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"]
    conversation_id: int = conversation["id"]
    return conversation_id


def test_an_agent_writing_a_reply_shows_as_typing_to_the_visitor_but_a_note_does_not(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    visitor = new_visitor(client, channel)
    visitor.say("hola")
    conversation_id = _next_created_conversation(client, tenant)
    url = f"/api/v1/conversations/{conversation_id}/typing"
    with _inbox_and_widget(client, manager, channel, visitor) as (inbox, widget):
        assert client.post(url, headers=manager.headers, json={"note": True}).status_code == 204
        assert _next(inbox, "typing")["data"]["note"] is True
        assert client.post(url, headers=manager.headers, json={}).status_code == 204
        # The first frame the visitor gets is the reply's typing: the note's never reached it.
        assert widget.receive_json() == {"type": "typing"}
        assert client.post(url, headers=tenant.headers, json={"note": "sí"}).status_code == 422


def test_with_the_workspace_setting_off_agents_see_only_what_is_theirs(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with db.transaction() as session:
        workspace = get_workspace(session, tenant.workspace_id)
        do_update_workspace(
            session,
            tenant.actor(Role.OWNER),
            name=workspace.name,
            default_country=workspace.default_country,
            timezone=workspace.timezone,
            default_language=workspace.default_language,
            agents_see_unassigned=False,
        )
    channel = make_webchat(db, tenant)
    agent = sign_in(db, tenant, Role.AGENT)
    first, second = new_visitor(client, channel), new_visitor(client, channel)
    with client.websocket_connect("/ws", headers={"cookie": agent.headers["Cookie"]}) as inbox:
        assert inbox.receive_json()["type"] == "hello"
        first.say("nadie me atiende")
        unassigned = _next_created_conversation(client, tenant)
        assert client.get(f"/api/v1/conversations/{unassigned}", headers=agent.headers).status_code == 404
        assert client.get("/api/v1/conversations", headers=agent.headers).json()["items"] == []
        second.say("para la agente")
        items = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"]
        mine = next(c["id"] for c in items if c["id"] != unassigned)
        client.post(f"/api/v1/conversations/{mine}/assign", headers=tenant.headers, json={"user_id": agent.user_id})
        second.say("ya es tuya")
        frames = [inbox.receive_json()]
        while not (frames[-1]["type"] == "message.created" and frames[-1]["data"]["message"]["text"] == "ya es tuya"):
            frames.append(inbox.receive_json())
        # Nothing of either chat reached this agent before it was assigned to her.
        texts = [(f.get("data") or {}).get("message", {}).get("text") for f in frames]
        assert "nadie me atiende" not in texts
        assert "para la agente" not in texts
        assert {f["conversation_id"] for f in frames} == {mine}


def test_binary_and_deeply_nested_frames_are_refused_cleanly(client: TestClient, db: Database, tenant: Tenant) -> None:
    """A binary frame used to raise KeyError in the socket task, and JSON nested 100,000 deep a
    RecursionError: the connection dropped with no close frame and a traceback in the log."""
    channel = make_webchat(db, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    visitor = new_visitor(client, channel)
    with _inbox_and_widget(client, manager, channel, visitor) as (_inbox, widget):
        widget.send_text("[" * 60_000 + "]" * 60_000)
        assert _next(widget, "error")["error"]["code"] == "invalid_frame"
        widget.send_json({"type": "ping"})  # the socket still works
        assert _next(widget, "pong") == {"type": "pong"}
        widget.send_text(" " * (MAX_FRAME_CHARS + 1))
        with pytest.raises(WebSocketDisconnect) as too_big:
            widget.receive_json()
        assert too_big.value.code == 1009
        assert too_big.value.reason == f"frames are limited to {MAX_FRAME_CHARS} characters"
    with _inbox_and_widget(client, manager, channel, visitor) as (inbox, widget):
        widget.send_bytes(b"\x00\x01")
        with pytest.raises(WebSocketDisconnect) as binary:
            widget.receive_json()
        assert (binary.value.code, binary.value.reason) == (1003, "binary frames are not accepted")
        inbox.send_bytes(b"\x00\x01")  # the agents' socket runs the same loop
        with pytest.raises(WebSocketDisconnect) as agent_binary:
            inbox.receive_json()
        assert agent_binary.value.code == 1003
