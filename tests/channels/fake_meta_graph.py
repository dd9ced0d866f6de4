"""A local Graph API server for Messenger and Instagram tests (WhatsApp's is fake_graph.py): a real
HTTP server speaking the documented wire format (../shared/reference/channels.md §2, §4, §5), so the
adapters are tested over HTTP exactly as they talk to Meta.

    GET    /{version}/{page id}?fields=id,name          the Page (Messenger connect)
    GET    /{version}/me?fields=user_id,username        the professional account (Instagram Login)
    POST   /{version}/{id|me}/subscribed_apps           subscribe the app ({"success": true})
    DELETE /{version}/{id|me}/subscribed_apps
    POST   /{version}/{id|me}/messages                  Send API, JSON or multipart (`filedata`)
    GET    /{version}/{user id}?fields=...              a customer's profile
    POST   /{version}/me/messenger_profile              persistent menu, Get Started, ice breakers
    DELETE /{version}/me/messenger_profile
    GET    /media/{name}                                 a file behind an attachment URL (the CDN)

A request with a token other than `token` answers Graph's 190 error. `fail_next(path suffix, status,
error)` scripts the next answer of an endpoint (a 613 throttle, a 10/2018278 policy refusal, ...).
The Send API answers `{"recipient_id", "message_id"}`.
"""

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    token: str
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


def graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


class FakeGraph:
    def __init__(self, token: str) -> None:
        self.url = ""
        self.token = token
        self.pages: dict[str, str] = {}
        self.page_instagram: dict[str, str] = {}  # page id -> its linked Instagram account id
        self.accounts: dict[str, str] = {}  # Instagram Login: user_id -> username
        self.profiles: dict[str, dict[str, Any]] = {}
        self.media: dict[str, tuple[bytes, str]] = {}
        self.requests: list[Request] = []
        self.failures: list[tuple[str, int, dict[str, Any]]] = []
        self.subscribed: set[str] = set()
        # Private replies: who wrote each comment (comment id -> the person's Messenger id).
        self.commenters: dict[str, str] = {}
        self.messenger_profile: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(self, suffix: str, status: int, error: dict[str, Any]) -> None:
        self.failures.append((suffix, status, error))

    def sent(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/messages")]

    def handle(self, request: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            for index, (suffix, status, error) in enumerate(self.failures):
                if request.path.endswith(suffix):
                    del self.failures[index]
                    return status, error
        if request.token != self.token:
            return 400, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        parts = request.path.strip("/").split("/")[1:]  # without the version
        if parts[-1] == "subscribed_apps":
            if request.method == "POST":
                self.subscribed.add(parts[0])
            else:
                self.subscribed.discard(parts[0])
            return 200, {"success": True}
        if parts[-1] == "messages" and request.method == "POST":
            return self._send(request)
        if parts[-1] == "messenger_profile":
            if request.method == "DELETE":
                for name in request.body.get("fields") or []:
                    self.messenger_profile.pop(name, None)
            else:
                self.messenger_profile.update(request.body)
            return 200, {"result": "success"}
        if request.method == "GET" and len(parts) == 1:
            return self._node(parts[0], request.query)
        return 400, graph_error(100, f"Unsupported request - method type: {request.method}")

    def _node(self, node: str, query: dict[str, str]) -> tuple[int, Any]:
        if node in self.pages:
            page: dict[str, Any] = {"id": node, "name": self.pages[node]}
            if node in self.page_instagram and "instagram_business_account" in (query.get("fields") or ""):
                page["instagram_business_account"] = {"id": self.page_instagram[node]}
            return 200, page
        if node == "me" and self.accounts:
            user_id, username = next(iter(self.accounts.items()))
            return 200, {"user_id": user_id, "username": username, "id": user_id}
        if node in self.profiles:
            wanted = (query.get("fields") or "").split(",")
            return 200, {"id": node, **{k: v for k, v in self.profiles[node].items() if k in wanted}}
        return 400, graph_error(100, f"Unsupported get request. Object with ID '{node}' does not exist", 33)

    def _send(self, request: Request) -> tuple[int, Any]:
        recipient = request.body.get("recipient") or {}
        message = request.body.get("message") or {}
        if not recipient or not (message.get("text") or message.get("attachment")):
            return 400, graph_error(100, "(#100) The parameter message is required")
        if request.body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return 400, graph_error(100, "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
        if "comment_id" in recipient:
            if recipient["comment_id"] not in self.commenters:
                return 400, graph_error(100, "(#100) No matching comment found")
            # A private reply: Meta answers with the commenter's page-scoped id.
            return 200, {
                "recipient_id": self.commenters[recipient["comment_id"]],
                "message_id": f"m_fake-{next(self._ids)}",
            }
        return 200, {"recipient_id": recipient.get("id"), "message_id": f"m_fake-{next(self._ids)}"}


def _parse(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, tuple[str, bytes, str]]]:
    if content_type.startswith("application/json"):
        return (json.loads(body) if body else {}), {}
    if content_type.startswith("multipart/form-data"):
        parsed = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        values: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename:
                files[str(name)] = (filename, data, part.get_content_type())
            else:
                text = data.decode()
                values[str(name)] = json.loads(text) if text.startswith(("{", "[")) else text
        return values, files
    return dict(parse_qsl(body.decode())), {}


@contextmanager
def fake_graph(token: str) -> Iterator[FakeGraph]:
    graph = FakeGraph(token)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, data: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> None:
            split = urlsplit(self.path)
            if split.path.startswith("/media/"):
                found = graph.media.get(split.path.removeprefix("/media/"))
                if found is None:
                    self._answer(404, b"not found", "text/plain")
                else:
                    self._answer(200, found[0], found[1])
                return
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            body, files = _parse(self.headers.get("content-type", ""), raw)
            query = dict(parse_qsl(split.query))
            token = self.headers.get("authorization", "").removeprefix("Bearer ") or query.get("access_token", "")
            status, answer = graph.handle(Request(self.command, split.path, query, body, token, files))
            self._answer(status, json.dumps(answer).encode())

        do_GET = do_POST = do_DELETE = _route  # noqa: N815 (BaseHTTPRequestHandler's names)

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
