"""An unexpected exception is cheap to log and leaks nothing (SQLite and PostgreSQL).

It used to be rendered as a rich traceback with every frame's local variables, on the event loop: one
failing request stalled every other request of the process for seconds, and the dumped ASGI scope
wrote bearer tokens, session cookies and visitor tokens to the log.
"""

import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from tertulia.app import create_app
from tertulia.kit.db import Database
from tertulia.kit.logging import REDACTED, scrub, uvicorn_options
from tertulia.kit.settings import Settings
from tests.conftest import Tenant
from tests.live_server import free_port

SESSION_COOKIE = "tertulia_session=" + secrets.token_urlsafe(32)
VISITOR_TOKEN = secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(32)
LOCAL_SENTINEL = "local-variable-" + secrets.token_hex(8)


def _add_failing_route(app: FastAPI) -> None:
    def boom(request: Request) -> None:
        # Locals like the ones real endpoints hold: the request (with its scope and headers) and data.
        headers = dict(request.headers)
        rows = [{"row": i, "values": list(range(40)), "note": LOCAL_SENTINEL} for i in range(300)]
        raise RuntimeError(f"forced failure with visitor {VISITOR_TOKEN} ({len(headers)}, {len(rows)})")

    app.add_api_route("/test-only/boom", boom, methods=["GET"])


@pytest.fixture
def base_url(db: Database, settings: Settings) -> Iterator[str]:
    app = create_app(settings, db)
    _add_failing_route(app)
    port = free_port()
    # Logging set up the way `tertulia serve` sets it up.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _healthz_seconds(client: httpx.Client) -> float:
    started = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    return time.perf_counter() - started


def test_forced_500s_neither_stall_other_requests_nor_log_secrets(
    base_url: str, tenant: Tenant, capfd: pytest.CaptureFixture[str]
) -> None:
    """Each round sends one failing request and, while it runs, /healthz again and again. The check is
    on the median round, so that one scheduling hiccup of a loaded machine does not decide it; a
    stalled event loop delays every round by seconds."""
    secret_headers = {"Authorization": f"Bearer {tenant.token}", "Cookie": SESSION_COOKIE}
    rounds = 7
    with (
        httpx.Client(base_url=base_url, timeout=30) as client,
        httpx.Client(base_url=base_url, timeout=30, headers=secret_headers) as failing,
        ThreadPoolExecutor(1) as pool,
    ):
        baseline = statistics.median(_healthz_seconds(client) for _ in range(10))
        capfd.readouterr()
        delays, responses = [], []
        for _ in range(rounds):
            failure = pool.submit(failing.get, "/test-only/boom", params={"token": VISITOR_TOKEN})
            latencies = [_healthz_seconds(client)]
            while not failure.done():
                latencies.append(_healthz_seconds(client))
            responses.append(failure.result())
            delays.append(max(latencies) - baseline)

    assert {r.status_code for r in responses} == {500}
    assert responses[0].json()["error"]["code"] == "internal_error"
    # The server closes the connection after an unexpected error, and says so.
    assert {r.headers.get("connection") for r in responses} == {"close"}
    assert statistics.median(delays) < 0.1, f"/healthz delayed by {sorted(delays)} s"

    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert "forced failure" in log
    assert LOCAL_SENTINEL not in log  # no local variables
    for secret in (tenant.token, SESSION_COOKIE.split("=", 1)[1], VISITOR_TOKEN):
        assert secret not in log
    # Logged once by the handler, not again by the server re-raising it.
    assert log.count("unhandled_error") == rounds
    assert "Exception in ASGI application" not in log


@pytest.mark.parametrize(
    "line",
    [
        "authorization: Bearer tt_abcDEF123_-xyz",
        "b'authorization', b'Bearer abc.def'",
        "cookie: tertulia_session=AbC-12_3; tertulia_csrf=zzz",
        "cookie: __Host-tertulia_csrf=zzz; tertulia_device=AbC-12_3.sig",
        "GET /widget/ws?key=wk_1&token=abc.def HTTP/1.1",
        "GET /invitations/AbCdEf123 HTTP/1.1",
        "GET /password-reset/AbCdEf123?x=1 HTTP/1.1",
        # Tokens are base64url: one may start with digits followed by "-" or "_".
        "GET /invitations/9-AbCdEf123 HTTP/1.1",
        "HTTP Request: GET http://127.0.0.1:8000/password-reset/12_AbCdEf123 200",
    ],
)
def test_token_like_values_are_scrubbed(line: str) -> None:
    scrubbed = scrub(line)
    assert REDACTED in scrubbed
    for secret in ("abcDEF123", "abc.def", "AbC-12_3", "zzz", "AbCdEf123"):
        assert secret not in scrubbed


def test_telegram_bot_tokens_in_urls_are_scrubbed() -> None:
    # httpx logs every request's URL at INFO; the Bot API puts the token in the path.
    line = 'HTTP Request: POST https://api.telegram.org/bot123456789:AAHdqTcv-CH1_vGWJxfSeof/sendMessage "200 OK"'
    scrubbed = scrub(line)
    assert "AAHdqTcv" not in scrubbed
    assert "/bot[redacted]/sendMessage" in scrubbed
    assert "123456789" not in scrub("GET https://api.telegram.org/file/bot123456789:AAHdqTcv/photos/f.jpg")


def test_numeric_invitation_routes_are_kept() -> None:
    assert scrub("POST /invitations/12/revoke") == "POST /invitations/12/revoke"
    assert scrub("GET /invitations/12 HTTP/1.1") == "GET /invitations/12 HTTP/1.1"
    assert scrub("GET /invitations/12") == "GET /invitations/12"


def test_the_access_log_keeps_no_link_or_visitor_secrets(base_url: str, capfd: pytest.CaptureFixture[str]) -> None:
    """uvicorn's access log, as `tertulia serve` configures it, goes through the same redaction."""
    secrets_in_urls = {
        "invitation": secrets.token_urlsafe(24),
        "reset": secrets.token_urlsafe(24),
        "visitor": VISITOR_TOKEN,
    }
    with httpx.Client(base_url=base_url, timeout=30) as client:
        capfd.readouterr()
        client.get(f"/invitations/{secrets_in_urls['invitation']}")
        client.get(f"/password-reset/{secrets_in_urls['reset']}")
        client.get("/widget/ws", params={"key": "wk_1", "token": secrets_in_urls["visitor"]})
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert "/invitations/[redacted]" in log
    assert "/password-reset/[redacted]" in log
    assert "token=[redacted]" in log
    for secret in secrets_in_urls.values():
        assert secret not in log
