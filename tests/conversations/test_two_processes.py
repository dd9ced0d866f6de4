"""Two real `tertulia serve` processes and one `tertulia worker`, sharing Redis for realtime and the
queue: an event caused through one web process reaches sockets connected to the other, and the
worker process sends the reply and its status event reaches them too."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tertulia.channels.service import do_create_channel
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tertulia.users.sessions import SESSION_COOKIE, do_sign_in
from tests.conversations.support import SHOP
from tests.live_server import free_port, wait_until_serving

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")


@contextmanager
def _servers(tmp_path: Path, settings: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """Two `tertulia serve` and one `tertulia worker` on one SQLite file, with extra `settings`."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(url)
    env = {
        **os.environ,
        "TERTULIA_DATABASE_URL": url,
        "TERTULIA_DATA_DIR": str(tmp_path),
        "TERTULIA_QUEUE_URL": REDIS_URL,
        "TERTULIA_QUEUE_NAME": f"test-{uuid.uuid4().hex[:8]}",
        "TERTULIA_REALTIME_URL": REDIS_URL,
        "TERTULIA_REALTIME_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        "TERTULIA_LOG_LEVEL": "warning",
        **settings,
    }
    ports = [free_port(), free_port()]
    commands = [["serve", "--port", str(port)] for port in ports] + [["worker", "--workers", "2"]]
    processes = [
        subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "tertulia", *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for command in commands
    ]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + 90
        for base, process in zip(bases, processes[:2], strict=True):
            wait_until_serving(base, process, deadline, "server")
        yield bases[0], bases[1], url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """Shared by the tests that need no extra settings (starting three processes is the slow part);
    each makes its own workspace and users, so they do not see each other's data."""
    with _servers(tmp_path_factory.mktemp("two-servers"), {}) as bases:
        yield bases


@pytest.fixture
def limited_servers(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """Servers of their own, with a visitor's limits low enough to reach in a few requests."""
    settings = {"TERTULIA_WIDGET_MESSAGES_PER_MINUTE": "3", "TERTULIA_WIDGET_SOCKETS_PER_VISITOR": "1"}
    with _servers(tmp_path, settings) as bases:
        yield bases


def _recv(connection: ClientConnection, wanted: str) -> dict[str, Any]:
    for _ in range(20):
        frame: dict[str, Any] = json.loads(connection.recv(timeout=10))
        if frame["type"] == wanted:
            return frame
    raise AssertionError(f"no {wanted} frame")


def test_event_reaches_a_socket_on_the_other_process(two_servers: tuple[str, str, str]) -> None:
    base_a, base_b, url = two_servers
    db = Database(url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Dos procesos", "owner@example.com", "owner-password")
        workspace_id = created.workspace.id
        manager = do_create_user(session, "manager@example.com", "manager-password")
        do_add_member(session, workspace_id, manager.id, Role.MANAGER)
        actor_owner = created.owner.id

        channel = do_create_channel(
            session,
            Actor(workspace_id=workspace_id, kind="user", user_id=actor_owner, role=Role.OWNER),
            "webchat",
            "Web",
            {"allowed_origins": [SHOP]},
        )
        signed = do_sign_in(session, "manager@example.com", "manager-password", client_ip=None)
        key, cookie, csrf = channel.key, signed.token, signed.web_session.csrf_token
    db.dispose()
    ws_b = base_b.replace("http://", "ws://")
    token = httpx.post(f"{base_a}/widget/{key}/session", headers={"Origin": SHOP}, json={}).json()["access_token"]
    with (
        connect(f"{ws_b}/ws", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as inbox,
        connect(f"{ws_b}/widget/ws?key={key}", additional_headers={"Origin": SHOP}) as widget,
    ):
        widget.send(json.dumps({"type": "auth", "token": token}))
        assert _recv(widget, "ready")["expires_at"] > time.time()
        assert _recv(inbox, "hello")["workspace_id"] == workspace_id
        sent = httpx.post(
            f"{base_a}/widget/{key}/messages",
            headers={"Origin": SHOP, "Authorization": f"Bearer {token}"},
            json={"text": "hola desde A", "client_msg_id": "two-proc-0001"},
        )
        assert sent.status_code == 201, sent.text
        frame = _recv(inbox, "message.created")
        assert frame["data"]["message"]["text"] == "hola desde A"
        _recv(widget, "message.created")  # the visitor's own message
        reply = httpx.post(
            f"{base_a}/api/v1/conversations/{frame['conversation_id']}/messages",
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}", "X-CSRF-Token": csrf},
            json={"text": "hola desde el inbox"},
        )
        assert reply.status_code == 201, reply.text
        assert _recv(widget, "message.created")["message"]["text"] == "hola desde el inbox"
        # Only the worker process consumes the Redis queue; its status event crosses too.
        assert _recv(inbox, "message.status")["data"]["status"] == "sent"


def test_signing_out_through_one_process_closes_the_socket_on_the_other(two_servers: tuple[str, str, str]) -> None:
    base_a, base_b, url = two_servers
    db = Database(url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Salida", "salida@example.com", "owner-password")
        signed = do_sign_in(session, "salida@example.com", "owner-password", client_ip=None)
        cookie, csrf = signed.token, signed.web_session.csrf_token
    db.dispose()
    ws_b = base_b.replace("http://", "ws://")
    with connect(f"{ws_b}/ws", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as inbox:
        assert _recv(inbox, "hello")["workspace_id"] == created.workspace.id
        out = httpx.post(
            f"{base_a}/logout",
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            data={"csrf_token": csrf},
            follow_redirects=False,
        )
        assert out.status_code == 303
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            inbox.recv(timeout=10)  # the periodic check would take up to 30 s
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "signed out")
        assert time.monotonic() - started < 10


def test_a_visitors_limits_hold_across_processes(limited_servers: tuple[str, str, str]) -> None:
    """The message budget and the socket cap are counted in Redis, whichever process a request or a
    socket reaches."""
    base_a, base_b, url = limited_servers
    db = Database(url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Limites", "owner@example.com", "owner-password")
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        key = do_create_channel(session, owner, "webchat", "Web", {"allowed_origins": [SHOP]}).key
    db.dispose()
    token = httpx.post(f"{base_a}/widget/{key}/session", headers={"Origin": SHOP}, json={}).json()["access_token"]
    headers = {"Origin": SHOP, "Authorization": f"Bearer {token}"}

    def post(base: str, n: int) -> int:
        body = {"text": f"mensaje {n}", "client_msg_id": f"across-{n:04d}"}
        return httpx.post(f"{base}/widget/{key}/messages", headers=headers, json=body).status_code

    assert [post(base_a, 1), post(base_b, 2)] == [201, 201]
    ws_a, ws_b = base_a.replace("http://", "ws://"), base_b.replace("http://", "ws://")
    with connect(f"{ws_b}/widget/ws?key={key}", additional_headers={"Origin": SHOP}) as socket:
        socket.send(json.dumps({"type": "auth", "token": token}))
        _recv(socket, "ready")
        socket.send(json.dumps({"type": "message", "text": "por B", "client_msg_id": "across-0003"}))
        assert _recv(socket, "ack")["client_msg_id"] == "across-0003"
        socket.send(json.dumps({"type": "message", "text": "de más", "client_msg_id": "across-0004"}))
        assert _recv(socket, "error")["error"]["code"] == "rate_limited"
        assert post(base_a, 5) == 429
        # A second socket of the same visitor, on the other process, is over the cap of one.
        with connect(f"{ws_a}/widget/ws?key={key}", additional_headers={"Origin": SHOP}) as second:
            second.send(json.dumps({"type": "auth", "token": token}))
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4429, "too_many_sockets")
