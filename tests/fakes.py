"""Test fakes shared by every test folder: made-up providers (a real local HTTP server, adapters
registered for one test at a time through `channels.registry.registered`), the inline queue, and
a listener that records the SQL statements sent to the database."""

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import event

from tertulia.channels import registry
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    DeliveryStatus,
    Fault,
    InboundMessage,
    OutboundMessage,
    ParsedWebhook,
    PermanentError,
    SendResult,
    StatusUpdate,
    TransientError,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.kit import queue
from tertulia.kit.db import Database


@pytest.fixture
def immediate_queue(db: Database) -> Iterator[None]:
    """Queued tasks run inline, right after the commit that queued them, against the test DB."""
    queue.huey.immediate = True
    queue.use_database(db)
    yield
    queue.huey.immediate = False
    queue.use_database(None)


@dataclass(frozen=True)
class Statement:
    """One statement sent to the database, as the driver got it."""

    sql: str
    parameters: Any
    executemany: bool

    def starts(self, prefix: str) -> bool:
        """Whether the statement begins with `prefix` (any case): "UPDATE messages", "INSERT INTO events"."""
        return self.sql.lstrip().upper().startswith(prefix.upper())

    @property
    def rows(self) -> int:
        """Parameter sets it ran with: an executemany's many, else one."""
        return len(self.parameters) if self.executemany else 1


@contextmanager
def sql_statements(db: Database, *, this_thread_only: bool = False) -> Iterator[list[Statement]]:
    """The statements sent to `db` while the block runs, in order: from every thread (a request served
    by the test client runs on another one), or with `this_thread_only` only the caller's, so a
    background thread of the same process (a queue consumer, a dispatch nudge) cannot be counted."""
    executed: list[Statement] = []
    caller = threading.get_ident()

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if not this_thread_only or threading.get_ident() == caller:
            executed.append(Statement(sql, parameters, executemany))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def callbacks_written(db: Database, timeout: float = 15.0) -> None:
    """Wait until every stored provider callback has been written by its queued task (with
    `immediate_queue` the task runs on the callback writer's thread right after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        if not callback_spool(db).waiting():
            return
        if time.monotonic() > deadline:
            raise AssertionError("provider callbacks still waiting")
        time.sleep(0.02)


@pytest.fixture
def fakehttp_adapter() -> Iterator["FakeHttpAdapter"]:
    """`FakeHttpAdapter` offered as channel type "fakehttp" for one test."""
    with registry.registered(FakeHttpAdapter()) as adapter:
        assert isinstance(adapter, FakeHttpAdapter)
        yield adapter


# ----- a fake provider: a real local HTTP server that counts deliveries per idempotency key -----


@dataclass
class FakeProvider:
    url: str = ""
    deliveries: Counter[str] = field(default_factory=Counter)
    ids: dict[str, str] = field(default_factory=dict)
    # Scripted answers for the next calls: (status, body); then 200.
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    calls: int = 0
    arrived_at: dict[str, float] = field(default_factory=dict)  # idempotency key -> first call's time.time()
    lock: threading.Lock = field(default_factory=threading.Lock)
    # When each call arrived (time.monotonic()) and with which key, in order.
    arrivals: list[tuple[float, str]] = field(default_factory=list)

    def handle(self, key: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls += 1
            self.arrived_at.setdefault(key, time.time())
            self.arrivals.append((time.monotonic(), key))
            if self.script:
                return self.script.pop(0)
            if key not in self.ids:
                self.deliveries[key] += 1
                self.ids[key] = f"prov-{len(self.ids) + 1}"
            return 200, {"id": self.ids[key]}


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            self.rfile.read(length)
            status, body = provider.handle(self.headers.get("idempotency-key", ""))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.url = f"http://127.0.0.1:{server.server_address[1]}/send"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


FAKE_SECRET = "fake-provider-secret"


class FakeHttpAdapter:
    """A provider adapter the way a real one is written: HTTP out, errors mapped by status (401 and 403
    the channel's credentials, any other 4xx the message's, 429 and 5xx retried); callbacks
    shaped like Meta's (X-Signature = hex HMAC-SHA256(secret, raw body); a GET handshake echoes
    `challenge` when `verify_token` is the secret)."""

    type: ClassVar[str] = "fakehttp"
    rules: ClassVar[ChannelRules] = ChannelRules(delivery_receipts=True)

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        secret = str(channel.secrets.get("secret", FAKE_SECRET))
        if request.method == "GET":
            if request.query.get("verify_token") != secret:
                raise WebhookRejected("bad verify token")
            return
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-signature", ""), expected):
            raise WebhookRejected("bad signature")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        if request.method == "GET":
            return ParsedWebhook(reply=request.query.get("challenge", ""))
        data = json.loads(request.body)
        return ParsedWebhook(
            messages=[
                InboundMessage(
                    sender_id=m["from"], provider_message_id=m["id"], text=m["text"], display_name=m.get("name")
                )
                for m in data.get("messages", [])
            ],
            statuses=[
                StatusUpdate(provider_message_id=s["id"], status=DeliveryStatus(s["status"]), reason=s.get("reason"))
                for s in data.get("statuses", [])
            ],
        )

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        try:
            response = httpx.post(
                channel.config["url"],
                json={"to": message.recipient_id, "text": message.text},
                headers={"Idempotency-Key": message.idempotency_key},
                timeout=5,
            )
        except httpx.TransportError as exc:
            raise TransientError(str(exc)) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(response.json().get("error", "provider busy"), retry_after=0)
        if response.status_code in (401, 403):
            # The channel's credentials refused: every message would fail the same way.
            raise PermanentError(
                response.json().get("error", "unauthorized"), code=str(response.status_code), fault=Fault.CREDENTIALS
            )
        if response.status_code >= 400:
            # This one recipient or message refused.
            raise PermanentError(response.json().get("error", "rejected"), code=str(response.status_code))
        return SendResult(provider_message_id=response.json()["id"])

    def public_config(self, channel: Channel) -> dict[str, Any]:
        return {}

    def clean_config(self, config: dict[str, Any], secrets: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(config), {"secret": FAKE_SECRET, **secrets}

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        return True
