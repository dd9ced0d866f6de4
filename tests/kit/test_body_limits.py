"""Oversized bodies are refused before they are read, and anonymous API bodies are not read at all
(SQLite and PostgreSQL, through a real server and raw sockets, so bodies really stream).

Before: an anonymous 1 GB multipart POST to /login was spooled to disk before its 403, and FastAPI
read an anonymous JSON body into memory before the bearer check.
"""

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tertulia.app import create_app
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.models import Role
from tertulia.users.sessions import SESSION_COOKIE
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import sql_statements
from tests.live_server import free_port, serve_app

MiB = 1024 * 1024


@pytest.fixture
def base_url(db: Database, settings: Settings) -> Iterator[str]:
    port = free_port()
    with serve_app(create_app(settings, db), port) as url:
        yield url


def _connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest


def _response_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def _stream_chunked(base_url: str, path: str, headers: str, total: int) -> tuple[int, bytes, int]:
    """POST `total` bytes in 64 KiB chunks; stops sending as soon as the server answers.
    Returns (status, body, bytes sent)."""
    sock = _connect(base_url)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n{headers}\r\n".encode())
    chunk = b"a" * (64 * 1024)
    sent = 0
    try:
        while sent < total and not _response_waiting(sock):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    status, body = _read_response(sock)
    sock.close()
    return status, body, sent


def test_declared_oversized_body_is_refused_before_it_is_sent(base_url: str) -> None:
    sock = _connect(base_url)
    sock.sendall(
        b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 1000000000\r\n\r\n--x\r\n"
    )
    status, body = _read_response(sock)
    sock.close()
    assert status == 413
    assert httpx.Response(413, content=body).json()["error"]["code"] == "payload_too_large"


def test_streamed_oversized_body_is_cut_off_at_the_limit(base_url: str) -> None:
    status, body, sent = _stream_chunked(
        base_url, "/login", "Content-Type: application/x-www-form-urlencoded\r\n", total=200 * MiB
    )
    assert status == 413
    assert httpx.Response(413, content=body).json()["error"]["code"] == "payload_too_large"
    # Refused near the 1 MiB limit (socket buffers hold some more), not after all 200 MiB.
    assert sent < 100 * MiB


def test_streamed_oversized_json_with_a_token_is_refused(base_url: str, tenant: Tenant) -> None:
    status, _body, sent = _stream_chunked(
        base_url,
        "/api/v1/contacts",
        f"Authorization: Bearer {tenant.token}\r\nContent-Type: application/json\r\n",
        total=200 * MiB,
    )
    assert status == 413
    assert sent < 100 * MiB


def test_anonymous_api_body_is_refused_without_being_read(base_url: str) -> None:
    sock = _connect(base_url)
    # Headers only: the body is never sent, so an answer proves the server did not wait to read it.
    sock.sendall(
        b"POST /api/v1/contacts HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500000\r\n\r\n"
    )
    sock.settimeout(5)
    started = time.monotonic()
    status, body = _read_response(sock)
    sock.close()
    assert status == 401
    assert httpx.Response(401, content=body).json()["error"]["code"] == "unauthorized"
    assert time.monotonic() - started < 5


def test_upload_routes_keep_their_larger_limit(base_url: str, tenant: Tenant) -> None:
    with httpx.Client(base_url=base_url, headers=tenant.headers, timeout=30) as client:
        uploaded = client.post("/api/v1/files", files={"file": ("big.txt", b"x" * (3 * MiB), "text/plain")})
        assert uploaded.status_code == 201, uploaded.text
        too_big = client.post("/api/v1/contacts", content=b"[" + b" " * (2 * MiB) + b"]")
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        # An ordinary request on the same server is unaffected.
        assert client.post("/api/v1/contacts", json={"first_name": "Ana"}).status_code == 201


def test_public_widget_takes_small_bodies_only(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        response = client.post("/widget/any-key/messages", content=b'{"text": "' + b"a" * 200_000 + b'"}')
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def _headers_only(base_url: str, path: str, headers: str) -> tuple[int, bytes, float]:
    """Send a POST's headers, declaring 500,000 bytes, and never the body: an answer proves the server
    decided without waiting to read it. Returns (status, body, seconds to the answer)."""
    sock = _connect(base_url)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}"
        "Content-Length: 500000\r\n\r\n".encode()
    )
    sock.settimeout(5)
    started = time.monotonic()
    status, body = _read_response(sock)
    sock.close()
    return status, body, time.monotonic() - started


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        ("Authorization: Bearer tt_made-up-token\r\n", "unauthorized"),
        ("Cookie: tertulia_session=made-up-session\r\n", "unauthorized"),
    ],
)
def test_api_body_with_a_fake_credential_is_refused_without_being_read(
    base_url: str, credential: str, code: str
) -> None:
    """A credential that was merely present used to let the body through: FastAPI read and parsed it
    before the endpoint's dependency found the token unknown."""
    status, body, seconds = _headers_only(base_url, "/api/v1/contacts", credential)
    assert status == 401
    assert httpx.Response(status, content=body).json()["error"]["code"] == code
    assert seconds < 5


def test_api_body_from_a_session_without_its_csrf_token_is_refused_without_being_read(
    base_url: str, db: Database, tenant: Tenant
) -> None:
    agent = sign_in(db, tenant, Role.AGENT)
    status, body, _ = _headers_only(base_url, "/api/v1/contacts", f"Cookie: {SESSION_COOKIE}={agent.cookie}\r\n")
    assert status == 403
    assert httpx.Response(status, content=body).json()["error"]["code"] == "csrf_failed"


def test_api_body_with_a_valid_credential_is_read(base_url: str, tenant: Tenant) -> None:
    response = httpx.post(f"{base_url}/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"})
    assert response.status_code == 201, response.text


def test_an_api_write_looks_its_token_up_once(base_url: str, db: Database, tenant: Tenant) -> None:
    """The gate checked the token before the body was read; the endpoint uses what it found."""
    with sql_statements(db) as executed:

        def lookups() -> int:
            return sum("FROM api_tokens" in statement.sql for statement in executed)

        created = httpx.post(f"{base_url}/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"})
        assert created.status_code == 201, created.text
        assert lookups() == 1
        executed.clear()
        # A request without a body is not gated: its endpoint looks the token up itself.
        assert httpx.get(f"{base_url}/api/v1/contacts", headers=tenant.headers).status_code == 200
        assert lookups() == 1
        executed.clear()
        revoked = {"Authorization": "Bearer tt_made_up_token"}
        assert httpx.post(f"{base_url}/api/v1/contacts", headers=revoked, json={"first_name": "Eva"}).status_code == 401
        assert lookups() == 1
