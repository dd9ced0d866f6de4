"""A local Bird for tests: a real HTTP server speaking Bird's Channels API (docs.bird.com/api/channels-api)
and the legacy MessageBird REST API (developers.messagebird.com/api/sms-messaging), so the adapter is
tested over HTTP exactly as it talks to Bird.

    GET  /workspaces/{workspace}/channels/{channel}              the channel
    POST /workspaces/{workspace}/channels/{channel}/messages     {"receiver", "body"} -> 202 message
    GET  /balance                                                legacy: {"payment", "type", "amount"}
    POST /messages                                               legacy: {"recipients", "originator", "body"} -> 201

Every call needs `Authorization: AccessKey <key>`; anything else is 401. Channels API errors are
`{"code", "message"}`, legacy ones `{"errors": [{"code", "description", "parameter"}]}`. `fail_next`
scripts the next send's answer. `deliver` posts a webhook signed as Bird documents it
(`messagebird-signature`, computed here with hmac/hashlib, independently of the adapter);
`deliver_legacy` posts a form with a MessageBird-Signature-JWT minted with PyJWT.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt

ACCESS_KEY = "bird-access-key-for-tests"
SIGNING_KEY = "bird-signing-key-for-tests-0123456789"
WORKSPACE = "2a3b4c5d-0000-4000-8000-00000000aaaa"
CHANNEL = "614208aa-b153-4d5d-9989-2fddfc0ce4c3"
NUMBER = "+31612345670"
CUSTOMER = "+31612345678"


@dataclass
class FakeBird:
    url: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    scripted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def fail_next(self, status: int, body: dict[str, Any]) -> None:
        self.scripted.append((status, body))

    def deliver(self, client: httpx.Client, url: str, event: dict[str, Any]) -> httpx.Response:
        body = json.dumps(event).encode()
        return client.post(
            url, content=body, headers={**signature_headers(url, body), "Content-Type": "application/json"}
        )

    def deliver_legacy(self, client: httpx.Client, url: str, params: dict[str, str]) -> httpx.Response:
        body = urlencode(params).encode()
        headers = {
            "MessageBird-Signature-JWT": legacy_token(url, body),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return client.post(url, content=body, headers=headers)


def signature_headers(url: str, body: bytes, key: str = SIGNING_KEY) -> dict[str, str]:
    stamp = str(int(time.time()))
    signed = stamp.encode() + b"\n" + url.encode() + b"\n" + hashlib.sha256(body).digest()
    signature = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest()).decode()
    return {"messagebird-signature": signature, "messagebird-request-timestamp": stamp}


def legacy_token(url: str, body: bytes, key: str = SIGNING_KEY) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "MessageBird",
        "nbf": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "url_hash": hashlib.sha256(url.encode()).hexdigest(),
    }
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return jwt.encode(claims, key, algorithm="HS256")


def inbound(message_id: str, text: str, sender: str = CUSTOMER) -> dict[str, Any]:
    """An `sms.inbound` event: the message object of docs.bird.com/api/channels-api/supported-channels/
    programmable-sms/receiving-messages in the subscription's envelope."""
    return {
        "service": "channels",
        "event": "sms.inbound",
        "payload": {
            "id": message_id,
            "channelId": CHANNEL,
            "sender": {
                "contact": {
                    "id": "32cf5eee-f940-422c-ab8c-5f753aad5efd",
                    "identifierKey": "phonenumber",
                    "identifierValue": sender,
                }
            },
            "receiver": {"connector": {"id": "86cc4dc0-3dc0-41b7-ac43-8ec829ead56f"}},
            "body": {"type": "text", "text": {"text": text}},
            "parts": [{"platformReference": "e8077d803532c0b5937c639b60216938"}],
            "status": "delivered",
            "direction": "incoming",
            "lastStatusAt": "2022-12-22T08:32:50.736Z",
            "createdAt": "2022-12-22T08:32:50.736Z",
            "updatedAt": "2022-12-22T08:32:50.736Z",
        },
    }


def outbound_status(message_id: str, status: str, to: str = CUSTOMER, reason: str | None = None) -> dict[str, Any]:
    """An `sms.outbound` event for a message we sent: the message object of `inbound` with direction
    outgoing, its `status` one of docs.bird.com/api/channels-api/message-status-and-interactions
    (sent, delivered; sending_failed and delivery_failed with a `reason`, message-failure-codes)."""
    payload: dict[str, Any] = {
        "id": message_id,
        "channelId": CHANNEL,
        "receiver": {"contacts": [{"identifierKey": "phonenumber", "identifierValue": to}]},
        "body": {"type": "text", "text": {"text": "…"}},
        "status": status,
        "direction": "outgoing",
    }
    if reason:
        payload["reason"] = reason
    return {"service": "channels", "event": "sms.outbound", "payload": payload}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBird

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        return self.headers.get("authorization") == f"AccessKey {ACCESS_KEY}"

    def _refuse(self, legacy: bool) -> None:
        if legacy:
            self._answer(
                401,
                {
                    "errors": [
                        {
                            "code": 2,
                            "description": "Request not allowed (incorrect access_key)",
                            "parameter": "access_key",
                        }
                    ]
                },
            )
        else:
            self._answer(401, {"code": "Unauthorized", "message": "Invalid access key"})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._authorised():
            self._refuse(path == "/balance")
        elif path == "/balance":
            self._answer(200, {"payment": "prepaid", "type": "credits", "amount": 42})
        elif path == f"/workspaces/{WORKSPACE}/channels/{CHANNEL}":
            self._answer(
                200, {"id": CHANNEL, "name": "Tienda SMS", "platformId": "sms-messagebird", "status": "active"}
            )
        else:
            self._answer(404, {"code": "NotFound", "message": "The requested resource was not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        legacy = path == "/messages"
        if not self._authorised():
            self._refuse(legacy)
            return
        if self.fake.scripted:
            self._answer(*self.fake.scripted.pop(0))
            return
        message_id = uuid.uuid4().hex if legacy else str(uuid.uuid4())
        if legacy:
            self.fake.sent.append({"id": message_id, **body})
            self._answer(
                201,
                {
                    "id": message_id,
                    "recipients": {
                        "totalCount": 1,
                        "items": [{"recipient": int(body["recipients"][0]), "status": "sent"}],
                    },
                },
            )
        elif path == f"/workspaces/{WORKSPACE}/channels/{CHANNEL}/messages":
            self.fake.sent.append({"id": message_id, **body})
            self._answer(202, {"id": message_id, "channelId": CHANNEL, "status": "accepted", **body})
        else:
            self._answer(404, {"code": "NotFound", "message": "The requested resource was not found"})


@contextmanager
def fake_bird() -> Iterator[FakeBird]:
    fake = FakeBird()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
