"""A local Twilio REST API for tests: a real HTTP server speaking the documented 2010-04-01 wire format
(twilio.com/docs/usage/api, twilio.com/docs/messaging/api/message-resource), so the adapter is
tested over HTTP exactly as it talks to Twilio.

    GET  /2010-04-01/Accounts/{AccountSid}.json                          the account
    GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json     ?PhoneNumber= filter
    POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{PN}.json  SmsUrl, SmsMethod
    POST /2010-04-01/Accounts/{AccountSid}/Messages.json                 To, From|MessagingServiceSid,
                                                                         Body, StatusCallback
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{MM}/Media/{ME}      a 307 to /cdn/{ME}, as Twilio
                                                                         redirects media to its CDN

Every API call needs HTTP Basic auth with the Account SID and auth token (or an API key and its
secret); anything else is 401 with Twilio's error 20003. Errors are Twilio's JSON shape:
`{"code", "message", "more_info", "status"}`. A message to a number in `unsubscribed` is refused
with 21610, a `To` that is not E.164 with 21211, a Body over 1600 characters with 21617;
`fail_next` scripts the next answer of Messages.json (429 with code 20429, a 5xx, ...).

`deliver` posts an incoming SMS to the number's SmsUrl and `status` a status callback to the
message's StatusCallback, both signed by the official SDK's `RequestValidator`, as Twilio signs them.
"""

import base64
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
API_KEY_SID = "SK" + "fedcba9876543210" * 2
API_KEY_SECRET = "api-key-secret-for-tests"
NUMBER = "+14155550100"
NUMBER_SID = "PN" + "1" * 32
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class FakeTwilio:
    url: str = ""
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)  # phone number -> resource
    messages: list[dict[str, str]] = field(default_factory=list)  # what Messages.json accepted
    unsubscribed: set[str] = field(default_factory=set)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # ME sid -> (bytes, content type)
    scripted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _sids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add_number(self, number: str = NUMBER, sid: str = NUMBER_SID) -> None:
        self.numbers[number] = {"sid": sid, "phone_number": number, "sms_url": "", "sms_method": "POST"}

    def fail_next(self, status: int, code: int, message: str) -> None:
        self.scripted.append((status, _error(status, code, message)))

    def media_url(self, message_sid: str, data: bytes, content_type: str) -> str:
        sid = f"ME{next(self._sids):032d}"
        self.media[sid] = (data, content_type)
        return f"{self.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media/{sid}"

    def deliver(self, client: httpx.Client, params: dict[str, str], *, number: str = NUMBER) -> httpx.Response:
        """An incoming message posted to the number's webhook, signed as Twilio signs it."""
        return post_signed(client, self.numbers[number]["sms_url"], params)

    def status(self, client: httpx.Client, sid: str, status: str, error_code: str | None = None) -> httpx.Response:
        sent = next(m for m in self.messages if m["sid"] == sid)
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": ACCOUNT_SID,
            "From": sent.get("From", NUMBER),
            "To": sent["To"],
            "ApiVersion": "2010-04-01",
        }
        if error_code:
            params["ErrorCode"] = error_code
        return post_signed(client, sent["StatusCallback"], params)


def sign(url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(AUTH_TOKEN).compute_signature(url, params))


def post_signed(
    client: httpx.Client, url: str, params: dict[str, str], *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Posts a signed callback to `url` through `client` (the app's TestClient, which serves any host)."""
    body = urlencode(params)
    signed = {"X-Twilio-Signature": sign(url, params), "Content-Type": "application/x-www-form-urlencoded"}
    return client.post(url, content=body, headers={**signed, **(headers or {})})


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any] | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        header = self.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) in {(ACCOUNT_SID, AUTH_TOKEN), (API_KEY_SID, API_KEY_SECRET)}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.fake.calls.append(("GET", parts.path))
        if parts.path.startswith("/cdn/"):
            data, content_type = self.fake.media[parts.path.removeprefix("/cdn/")]
            self._answer(200, data, content_type)
            return
        if not self._authorised():
            self._answer(401, _error(401, 20003, "Authenticate"))
            return
        prefix = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
        if parts.path == f"{prefix}.json":
            self._answer(200, {"sid": ACCOUNT_SID, "friendly_name": "Tienda Lupita", "status": "active"})
        elif parts.path == f"{prefix}/IncomingPhoneNumbers.json":
            wanted = dict(parse_qsl(parts.query)).get("PhoneNumber")
            found = [n for p, n in self.fake.numbers.items() if wanted in (None, p)]
            self._answer(200, {"incoming_phone_numbers": found})
        elif re.fullmatch(rf"{prefix}/Messages/MM\w+/Media/(ME\w+)", parts.path):
            media_sid = parts.path.rpartition("/")[2]
            if media_sid not in self.fake.media:
                self._answer(404, _error(404, 20404, "The requested resource was not found"))
                return
            self.send_response(307)
            self.send_header("location", f"{self.fake.url}/cdn/{media_sid}")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self._answer(404, _error(404, 20404, "The requested resource was not found"))

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        self.fake.calls.append(("POST", parts.path))
        form = dict(
            parse_qsl(self.rfile.read(int(self.headers.get("content-length", "0"))).decode(), keep_blank_values=True)
        )
        if not self._authorised():
            self._answer(401, _error(401, 20003, "Authenticate"))
            return
        prefix = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
        number = re.fullmatch(rf"{prefix}/IncomingPhoneNumbers/(PN\w+)\.json", parts.path)
        if number:
            for resource in self.fake.numbers.values():
                if resource["sid"] == number.group(1):
                    resource["sms_url"] = form.get("SmsUrl", resource["sms_url"])
                    resource["sms_method"] = form.get("SmsMethod", resource["sms_method"])
                    self._answer(200, resource)
                    return
            self._answer(404, _error(404, 20404, "The requested resource was not found"))
        elif parts.path == f"{prefix}/Messages.json":
            self._message(form)
        else:
            self._answer(404, _error(404, 20404, "The requested resource was not found"))

    def _message(self, form: dict[str, str]) -> None:
        if self.fake.scripted:
            self._answer(*self.fake.scripted.pop(0))
            return
        to = form.get("To", "")
        if not E164.match(to):
            self._answer(400, _error(400, 21211, f"The 'To' number {to} is not a valid phone number."))
        elif to in self.fake.unsubscribed:
            self._answer(400, _error(400, 21610, "Attempt to send to unsubscribed recipient"))
        elif len(form.get("Body", "")) > 1600:
            self._answer(400, _error(400, 21617, "The concatenated message body exceeds the 1600 character limit."))
        elif not (form.get("From") or form.get("MessagingServiceSid")):
            self._answer(400, _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required"))
        else:
            sid = f"SM{next(self.fake._sids):032d}"
            self.fake.messages.append({"sid": sid, **form})
            self._answer(
                201,
                {
                    "sid": sid,
                    "account_sid": ACCOUNT_SID,
                    "to": to,
                    "from": form.get("From"),
                    "messaging_service_sid": form.get("MessagingServiceSid"),
                    "body": form.get("Body"),
                    "status": "accepted" if form.get("MessagingServiceSid") else "queued",
                    "num_segments": "1",
                    "num_media": "0",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "error_code": None,
                    "error_message": None,
                },
            )


@contextmanager
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio()
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
