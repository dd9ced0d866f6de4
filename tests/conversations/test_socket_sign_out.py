"""An inbox socket closes as soon as its session ends (SQLite and PostgreSQL).

It used to keep streaming the workspace's events until its next periodic check, up to 30 seconds
after sign-out, a password change or a deactivation.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.service import do_deactivate_member
from tests.conftest import Tenant
from tests.conversations.support import Agent, make_webchat, new_visitor, sign_in

pytestmark = pytest.mark.usefixtures("immediate_queue")


@contextmanager
def _inbox(client: TestClient, agent: Agent) -> Iterator[WebSocketTestSession]:
    with client.websocket_connect("/ws", headers={"cookie": agent.headers["Cookie"]}) as socket:
        assert socket.receive_json()["type"] == "hello"
        yield socket


def _closed_with(socket: WebSocketTestSession) -> tuple[int, str]:
    """The close the socket gets next; a frame instead (the event that follows) fails the test."""
    try:
        frame: dict[str, Any] = socket.receive_json()
    except WebSocketDisconnect as closed:
        return closed.code, closed.reason
    raise AssertionError(f"still streaming after the session ended: {frame['type']}")


def _created(socket: WebSocketTestSession) -> dict[str, Any]:
    for _ in range(20):
        frame: dict[str, Any] = socket.receive_json()
        if frame["type"] == "message.created":
            return frame
    raise AssertionError("no message.created frame")


def test_sign_out_closes_that_sessions_socket_at_once_and_no_other(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    laptop, phone = sign_in(db, tenant, Role.MANAGER), sign_in(db, tenant, Role.MANAGER)
    with _inbox(client, laptop) as laptop_socket, _inbox(client, phone) as phone_socket:
        out = client.post(
            "/logout",
            headers={"Cookie": laptop.headers["Cookie"]},
            data={"csrf_token": laptop.csrf},
            follow_redirects=False,
        )
        assert out.status_code == 303
        visitor.say("¿sigue ahí alguien?")  # an event right after: it must not reach the signed-out socket
        assert _closed_with(laptop_socket) == (4401, "signed out")
        assert _created(phone_socket)["data"]["message"]["text"] == "¿sigue ahí alguien?"


def test_a_password_change_closes_every_socket_of_the_user(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    agent, other_browser = sign_in(db, tenant, Role.AGENT), sign_in(db, tenant, Role.AGENT)
    with _inbox(client, agent) as first, _inbox(client, other_browser) as second:
        changed = client.post(
            "/profile/password",
            headers={"Cookie": agent.headers["Cookie"]},
            data={"current_password": "agent-password", "new_password": "a-new-password-1", "csrf_token": agent.csrf},
            follow_redirects=False,
        )
        assert changed.status_code == 303, changed.text
        visitor.say("hola")
        assert _closed_with(first) == (4401, "signed out")
        assert _closed_with(second) == (4401, "signed out")


def test_deactivation_closes_the_members_sockets(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    agent, manager = sign_in(db, tenant, Role.AGENT), sign_in(db, tenant, Role.MANAGER)
    with _inbox(client, agent) as agent_socket, _inbox(client, manager) as manager_socket:
        with db.transaction() as session:
            do_deactivate_member(session, tenant.actor(Role.OWNER), tenant.agent_id)
        visitor.say("hola")
        assert _closed_with(agent_socket) == (4401, "signed out")
        assert _created(manager_socket)["data"]["message"]["text"] == "hola"
