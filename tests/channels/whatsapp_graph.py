"""A local WhatsApp Cloud API (Graph) server for the sending side, speaking Meta's documented wire format:

    POST /{version}/{phone-number-id}/messages   JSON send body -> {"messaging_product", "contacts",
                                                 "messages": [{"id", "message_status"}]}
    POST /{version}/{phone-number-id}/media      multipart: `file`, `type` (its MIME type),
                                                 `messaging_product=whatsapp` -> {"id": "<media id>"}
    GET  /{version}/{phone-number-id}?fields=... the phone number's fields asked for

Sources: ../shared/reference/channels.md §3.3 (send body and answer), Meta's Cloud API media reference
(developers.facebook.com/docs/whatsapp/cloud-api/reference/media, "Upload Media": the three form
fields, the `{"id"}` answer, and the supported media types and sizes) and phone numbers reference
(developers.facebook.com/docs/whatsapp/cloud-api/reference/phone-numbers: `verified_name`,
`display_phone_number`, `quality_rating`, `messaging_limit_tier`). Errors are Graph's error shape
(§2). Like Meta it refuses a request without the access token (190), an upload without one of its
fields or of a type or size Meta does not take (131053, "Media upload error"), and a media message
naming a media id it never issued (131053). `fail_next(kind, status, body)` scripts the next answer
of "messages", "media" or "number". Each request is recorded with the time of `clock()` when it
arrived, so tests can move a clock rather than sleep.
"""

import contextlib
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tertulia.kit.clock import utcnow
from tests.channels import whatsapp_samples as wa
from tests.channels.fake_telegram import parse_request

TOKEN = "EAAG-test-token"
VERSION = "v26.0"
# Meta's supported media types and their largest sizes (the media reference's table).
UPLOAD_LIMITS = {
    "audio/aac": 16 << 20,
    "audio/amr": 16 << 20,
    "audio/mpeg": 16 << 20,
    "audio/mp4": 16 << 20,
    "audio/ogg": 16 << 20,
    "text/plain": 100 << 20,
    "application/pdf": 100 << 20,
    "application/msword": 100 << 20,
    "image/jpeg": 5 << 20,
    "image/png": 5 << 20,
    "image/webp": 500 << 10,
    "video/mp4": 16 << 20,
    "video/3gpp": 16 << 20,
}
NUMBER = {
    "verified_name": "Tienda Tertulia",
    "display_phone_number": "+1 555-078-3881",
    "quality_rating": "GREEN",
    "messaging_limit_tier": "TIER_1K",
    "id": wa.PHONE_NUMBER_ID,
}


@dataclass
class Received:
    kind: str  # "messages", "media" or "number"
    path: str
    at: datetime
    body: dict[str, Any] = field(default_factory=dict)
    # Uploads: field -> (file name, bytes, content type)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


class FakeGraph:
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        self.received: list[Received] = []
        self.media: dict[str, tuple[str, bytes, str]] = {}
        self.number = dict(NUMBER)
        self._failures: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.base_url = ""
        # The client port of every request: how many connections the sends were spread over.
        self.client_ports: list[int] = []

    def fail_next(self, kind: str, status: int, body: dict[str, Any]) -> None:
        self._failures.setdefault(kind, []).append((status, body))

    def sent(self) -> list[Received]:
        return [r for r in self.received if r.kind == "messages"]

    def _scripted(self, kind: str) -> tuple[int, dict[str, Any]] | None:
        waiting = self._failures.get(kind)
        return waiting.pop(0) if waiting else None

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, wa.graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != VERSION or parts[1] != wa.PHONE_NUMBER_ID:
            return 400, wa.graph_error(100, "Unsupported request - method type: " + method.lower())
        kind = parts[2] if len(parts) == 3 else "number"
        with self._lock:
            if method == "GET" and kind == "number":
                fields = dict(parse_qsl(query)).get("fields", "id").split(",")
                self.received.append(Received("number", path, self.clock(), {"fields": fields}))
                scripted = self._scripted("number")
                return scripted or (200, {k: self.number.get(k) for k in [*fields, "id"] if k in self.number})
            if method == "POST" and kind == "media":
                params, files = parse_request(headers.get("content-type", ""), body, "")
                self.received.append(Received("media", path, self.clock(), params, files))
                return self._scripted("media") or self._upload(params, files)
            if method == "POST" and kind == "messages":
                sent = json.loads(body)
                self.received.append(Received("messages", path, self.clock(), sent))
                return self._scripted("messages") or self._send(sent)
        return 400, wa.graph_error(100, "Unsupported request")

    def _upload(self, params: dict[str, Any], files: dict[str, tuple[str, bytes, str]]) -> tuple[int, dict[str, Any]]:
        if params.get("messaging_product") != "whatsapp" or "file" not in files or not params.get("type"):
            return 400, wa.graph_error(100, "(#100) The parameter messaging_product, file and type are required.")
        name, data, _ = files["file"]
        content_type = str(params["type"])
        largest = UPLOAD_LIMITS.get(content_type)
        if largest is None or len(data) > largest:
            return 400, wa.graph_error(131053, "(#131053) Media upload error")
        media_id = str(900000 + next(self._ids))
        self.media[media_id] = (name, data, content_type)
        return 200, {"id": media_id}

    def _send(self, sent: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kind = sent.get("type")
        media = sent.get(str(kind)) if kind in ("image", "audio", "video", "document", "sticker") else None
        if isinstance(media, dict) and "id" in media and str(media["id"]) not in self.media:
            return 400, wa.graph_error(131053, "(#131053) Media upload error")
        return 200, wa.accepted(f"wamid.sent{len(self.sent())}")


@contextmanager
def fake_graph(clock: Callable[[], datetime] = utcnow) -> Iterator[FakeGraph]:
    graph = FakeGraph(clock)

    open_connections: set[socket.socket] = set()

    class Handler(BaseHTTPRequestHandler):
        # Like Graph itself, connections stay open between requests.
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            open_connections.add(self.connection)

        def _serve(self, method: str) -> None:
            graph.client_ports.append(self.client_address[1])
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = graph.handle(method, url.path, url.query, headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    graph.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield graph
    finally:
        server.shutdown()
        server.server_close()
        # A kept-alive connection must not outlive its fake (a later one could be given its port).
        for connection in list(open_connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
