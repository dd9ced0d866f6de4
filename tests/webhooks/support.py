"""A real local HTTP receiver for webhook tests: records every request (headers and body) and
answers from a script (per request), else 200."""

import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi.testclient import TestClient

from tertulia.kit.settings import get_settings
from tertulia.webhooks.delivery import Policy
from tests.webhooks.tls import ServerCertificate


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    # Called with the parsed body: the status to answer (None: 200).
    answer: Callable[[Any], int | None] = lambda _body: None
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, status: int = 200) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.status == status]


@contextmanager
def receiver(tls: ServerCertificate | None = None) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1; over https with `tls`'s certificate (tests/webhooks/tls.py)."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                status = state.script.pop(0) if state.script else None
            if status is None:
                status = state.answer(json.loads(body)) or 200
            with state.lock:
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
                )
            reply = b'{"ok": true}' if status < 300 else b'{"error": "receiver says no"}'
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        # The handshake happens on accept; a client refusing the certificate is an OSError there,
        # which the server ignores.
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def policy(**overrides: Any) -> Policy:
    values: dict[str, Any] = {"allow_private": True, "retry_base_seconds": 0.01, "timeout_seconds": 5.0}
    values.update(overrides)
    return Policy(**values)


@contextmanager
def private_addresses_allowed() -> Iterator[None]:
    """Settings as a worker reads them (get_settings) with local receivers allowed and fast retries."""
    saved = {k: os.environ.get(k) for k in ("TERTULIA_WEBHOOKS_ALLOW_PRIVATE", "TERTULIA_WEBHOOKS_RETRY_BASE_SECONDS")}
    os.environ["TERTULIA_WEBHOOKS_ALLOW_PRIVATE"] = "true"
    os.environ["TERTULIA_WEBHOOKS_RETRY_BASE_SECONDS"] = "0.01"
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def create_endpoint(client: TestClient, headers: dict[str, str], url: str, events: list[str]) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", headers=headers, json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
