"""A local stand-in for graph.facebook.com, for the WhatsApp Cloud API: a real HTTP server speaking
Meta's documented wire format (../shared/reference/channels.md §3), so the adapter is tested over
HTTP exactly as it talks to Meta.

    POST /{version}/{phone number id}/messages        records the body, answers `accepted` (§3.3)
                                                      with ids wamid.sent1, wamid.sent2, ...
    GET  /{version}/{business account id}/message_templates?limit=&after=
                                                      the account's templates a page at a time:
                                                      `data`, `paging.cursors.before/after`, and
                                                      `paging.next` while more remain (sample response
                                                      of developers.facebook.com/docs/graph-api/
                                                      reference/whats-app-business-account/
                                                      message_templates/)

Every request needs `Authorization: Bearer <token>`; another token is Graph's 190 error (401), an
unknown path Graph's 100 error (404). `fail_templates` makes the template list answer a Graph error;
`page_size` makes its pages shorter than asked for.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from tests.channels import whatsapp_samples as wa

TOKEN = "EAAG-test-token"


@dataclass
class FakeGraph:
    url: str = ""
    templates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    template_requests: list[dict[str, list[str]]] = field(default_factory=list)
    fail_templates: tuple[int, dict[str, Any]] | None = None
    # Meta may answer fewer templates than `limit` asks for: pages of at most this many.
    page_size: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_templates(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.template_requests.append(query)
            if self.fail_templates is not None:
                return self.fail_templates
            templates = list(self.templates)
        limit = max(1, min(self.page_size, int((query.get("limit") or ["25"])[0])))
        start = int((query.get("after") or ["0"])[0] or 0)
        page = templates[start : start + limit]
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
        if start + limit < len(templates):
            # Meta's link points at graph.facebook.com; the client must not need to follow it.
            paging["next"] = f"https://graph.facebook.com/v26.0/x/message_templates?limit={limit}&after={start + limit}"
        return 200, {"data": page, "paging": paging}


@contextmanager
def fake_graph(templates: list[dict[str, Any]] | None = None) -> Iterator[FakeGraph]:
    graph = FakeGraph(templates=list(templates or []))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, data: dict[str, Any]) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _authorised(self) -> bool:
            if self.headers.get("authorization") == f"Bearer {TOKEN}":
                return True
            self._answer(401, wa.graph_error(190, "Invalid OAuth access token"))
            return False

        def do_GET(self) -> None:
            if not self._authorised():
                return
            parts = urlsplit(self.path)
            if parts.path.endswith(f"/{wa.BUSINESS_ACCOUNT_ID}/message_templates"):
                self._answer(*graph.answer_templates(parse_qs(parts.query)))
            else:
                self._answer(404, wa.graph_error(100, "Unsupported get request"))

        def do_POST(self) -> None:
            if not self._authorised():
                return
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            if not self.path.endswith(f"/{wa.PHONE_NUMBER_ID}/messages"):
                self._answer(404, wa.graph_error(100, "Unsupported post request"))
                return
            with graph.lock:
                graph.sent.append({"path": self.path, "body": body})
                provider_id = f"wamid.sent{len(graph.sent)}"
            self._answer(200, wa.accepted(provider_id))

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    graph.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield graph
    finally:
        server.shutdown()
        server.server_close()


def connect_whatsapp(client: TestClient, manager_headers: dict[str, str], graph: FakeGraph) -> dict[str, Any]:
    """The samples' WhatsApp number connected through the API against this fake (its templates read
    from it); the created channel as the API returns it."""
    body = {
        "type": "whatsapp",
        "name": "Ventas",
        "config": {
            "phone_number_id": wa.PHONE_NUMBER_ID,
            "business_account_id": wa.BUSINESS_ACCOUNT_ID,
            "api_base_url": graph.url,
            "display_phone_number": "+1 555 078 3881",
        },
        "secrets": {"access_token": TOKEN, "app_secret": wa.APP_SECRET},
    }
    created = client.post("/api/v1/channels", headers=manager_headers, json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())
