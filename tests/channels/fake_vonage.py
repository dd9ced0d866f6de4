"""A local Vonage for tests: a real HTTP server speaking the documented wire formats of the SMS API,
the Messages API and the account and numbers APIs (developer.vonage.com/en/api/sms,
/en/api/messages-olympus, /en/api/account, /en/api/numbers), so the adapter is tested over HTTP
exactly as it talks to Vonage.

    GET  /account/get-balance     api_key, api_secret             {"value", "autoReload"}
    GET  /account/numbers         api_key, api_secret, pattern    {"count", "numbers": [...]}
    POST /number/update           country, msisdn, moHttpUrl      {"error-code": "200", ...}
    POST /sms/json                api_key, api_secret, from, to, text, type, callback, client-ref
    POST /v1/messages             Basic auth; JSON {message_type, text, to, from, channel, webhook_url}

Wrong credentials answer 401 as Vonage does. /sms/json answers 200 with a status per part (the SDK
fixture `sms/tests/data/send_sms.json`): "0" accepted, "7" "Number barred." for a number in
`barred`; `fail_next_sms` scripts the next status (e.g. "1", throttled). /v1/messages answers 202
{"message_uuid"} or an RFC 7807 problem (`fail_next_messages`).

`deliver` posts an inbound SMS to the number's moHttpUrl signed with the official SDK's
`Auth.sign_params`; `receipt` posts a delivery receipt to the message's callback, signed the same
way; `deliver_event` posts a Messages API webhook with its HS256 JWT (`payload_hash`), checked with
the SDK's `vonage_jwt.verify_signature` before it is sent.
"""

import base64
import hashlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
from vonage_http_client.auth import Auth
from vonage_jwt import verify_signature

API_KEY = "abcd1234"
API_SECRET = "Vonage-api-secret-1"
SIGNATURE_SECRET = "vonage-signature-secret-for-tests"
NUMBER = "+447911123456"  # a valid UK mobile (the docs' 07700 900xxx range is not a valid number)
CUSTOMER = "+447400123456"
METHOD = "sha256"


@dataclass
class FakeVonage:
    url: str = ""
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)  # msisdn (digits) -> resource
    sent: list[dict[str, Any]] = field(default_factory=list)  # what /sms/json and /v1/messages accepted
    barred: set[str] = field(default_factory=set)
    sms_script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    messages_script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add_number(self, number: str = NUMBER) -> None:
        digits = number.lstrip("+")
        self.numbers[digits] = {
            "country": "GB",
            "msisdn": digits,
            "moHttpUrl": "",
            "type": "mobile-lvn",
            "features": ["SMS"],
        }

    def fail_next_sms(self, status: str, text: str) -> None:
        self.sms_script.append((200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]}))

    def fail_next_messages(self, status: int, title: str, detail: str) -> None:
        self.messages_script.append((status, problem(status, title, detail)))

    def deliver(
        self, client: httpx.Client, params: dict[str, str], *, number: str = NUMBER, url: str | None = None
    ) -> httpx.Response:
        """An inbound SMS, signed and posted as the SMS API posts it (form-encoded)."""
        target = url or self.numbers[number.lstrip("+")]["moHttpUrl"]
        return client.post(
            target, content=urlencode(signed(params)), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )

    def receipt(self, client: httpx.Client, message_id: str, status: str, err_code: str = "0") -> httpx.Response:
        """A delivery receipt for a message sent: the fields of the typical DLR in
        developer.vonage.com/messaging/sms/guides/delivery-receipts ("Understanding the delivery
        receipt") and of the SMS API specification's DeliveryReceipt (its `network-code`, `price`
        and `scts` examples), `err-code` one of that page's "DLR error codes"."""
        sent = next(m for m in self.sent if m["id"] == message_id)
        params = {
            "msisdn": sent["to"],
            "to": sent["from"],
            "network-code": "23410",
            "messageId": message_id,
            "price": "0.03330000",
            "status": status,
            "scts": "2001011400",
            "err-code": err_code,
            "api-key": API_KEY,
            "message-timestamp": "2026-11-26 12:00:00",
        }
        return client.post(
            sent["callback"],
            content=urlencode(signed(params)),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def deliver_event(self, client: httpx.Client, url: str, event: dict[str, Any]) -> httpx.Response:
        body = json.dumps(event).encode()
        token = messages_token(body)
        assert verify_signature(token, SIGNATURE_SECRET)  # the SDK agrees the token is Vonage's
        return client.post(
            url, content=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )


def signed(params: dict[str, str], method: str = METHOD) -> dict[str, str]:
    """`params` with timestamp, nonce and the `sig` the official SDK computes."""
    stamped = {**params, "timestamp": str(int(time.time())), "nonce": uuid.uuid4().hex}
    sig = Auth(api_key=API_KEY, signature_secret=SIGNATURE_SECRET, signature_method=method).sign_params(dict(stamped))
    return {**stamped, "sig": sig}


def messages_token(body: bytes, secret: str = SIGNATURE_SECRET) -> str:
    """A Messages API webhook's JWT: HS256 with the signature secret, payload_hash = SHA-256 of the body."""
    claims = {
        "iat": int(time.time()),
        "jti": uuid.uuid4().hex,
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": API_KEY,
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    """An RFC 7807 error as the Messages API answers (SDK fixture messages/tests/data/invalid_error.json)."""
    return {
        "type": f"https://developer.vonage.com/api-errors/messages#{1000 + status}",
        "title": title,
        "detail": detail,
        "instance": str(uuid.uuid4()),
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeVonage

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _credentials(self, params: dict[str, str]) -> bool:
        return params.get("api_key") == API_KEY and params.get("api_secret") == API_SECRET

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query))
        if not self._credentials(params):
            self._answer(401, {"error-code": "401", "error-code-label": "authentication failed"})
        elif parts.path == "/account/get-balance":
            self._answer(200, {"value": 10.28, "autoReload": False})
        elif parts.path == "/account/numbers":
            found = [n for d, n in self.fake.numbers.items() if params.get("pattern", "") in d]
            self._answer(200, {"count": len(found), "numbers": found})
        else:
            self._answer(404, {"error-code": "404", "error-code-label": "not found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        if parts.path == "/v1/messages":
            self._messages(raw)
            return
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        if not self._credentials(form):
            self._answer(401, {"error-code": "401", "error-code-label": "authentication failed"})
        elif parts.path == "/number/update":
            number = self.fake.numbers.get(form.get("msisdn", ""))
            if number is None:
                self._answer(200, {"error-code": "420", "error-code-label": "Invalid msisdn"})
                return
            number["moHttpUrl"] = form.get("moHttpUrl", "")
            self._answer(200, {"error-code": "200", "error-code-label": "success"})
        elif parts.path == "/sms/json":
            self._sms(form)
        else:
            self._answer(404, {"error-code": "404", "error-code-label": "not found"})

    def _sms(self, form: dict[str, str]) -> None:
        if self.fake.sms_script:
            self._answer(*self.fake.sms_script.pop(0))
            return
        if form.get("to") in self.fake.barred:
            self._answer(200, {"message-count": "1", "messages": [{"status": "7", "error-text": "Number barred."}]})
            return
        message_id = f"{next(self.fake._ids):016X}"
        self.fake.sent.append({"id": message_id, **form})
        self._answer(
            200,
            {
                "message-count": "1",
                "messages": [
                    {
                        "to": form.get("to"),
                        "message-id": message_id,
                        "status": "0",
                        "remaining-balance": "38.07243628",
                        "message-price": "0.04120000",
                        "network": "23420",
                    }
                ],
            },
        )

    def _messages(self, raw: bytes) -> None:
        header = self.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
        if header != expected:
            self._answer(401, problem(401, "Unauthorized", "You did not provide correct credentials."))
            return
        if self.fake.messages_script:
            self._answer(*self.fake.messages_script.pop(0))
            return
        body = json.loads(raw)
        if body.get("to") in self.fake.barred:
            self._answer(422, problem(422, "Invalid params", "The value of the `to` parameter is barred."))
            return
        message_uuid = str(uuid.uuid4())
        self.fake.sent.append({"id": message_uuid, **body})
        self._answer(202, {"message_uuid": message_uuid})


@contextmanager
def fake_vonage() -> Iterator[FakeVonage]:
    fake = FakeVonage()
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
