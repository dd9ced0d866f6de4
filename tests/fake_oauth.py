"""A local OAuth 2.0 authorisation server standing in for Google's (accounts.google.com and
oauth2.googleapis.com), speaking the documented wire format:

- GET /auth?response_type=code&client_id&redirect_uri&scope&state&access_type=offline: the consent
  step, answered at once with a 302 to redirect_uri?code=...&state=... (RFC 6749 §4.1.2);
- POST /token, form-encoded: grant_type=authorization_code (code, redirect_uri, client_id,
  client_secret) gives {"access_token", "expires_in", "refresh_token", "scope", "token_type":
  "Bearer"}; grant_type=refresh_token gives a new access token (§6). Errors are 400 {"error":
  "invalid_grant" | "invalid_client", "error_description"} (§5.2);
- POST /introspect (RFC 7662), for Dovecot's oauth2 passdb: {"active": true, "email": ...}.
"""

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "1234567890-tertulia.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-secret"


@dataclass
class FakeOAuth:
    url: str = ""
    user: str = "support@shop.example.com"
    codes: dict[str, str] = field(default_factory=dict)  # code -> redirect_uri
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    refreshes: int = 0
    expires_in: int = 3600

    def revoke_all(self) -> None:
        self.refresh_tokens.clear()
        self.access_tokens.clear()


@contextlib.contextmanager
def fake_oauth() -> Iterator[FakeOAuth]:
    state = FakeOAuth()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path != "/auth" or query.get("client_id") != CLIENT_ID:
                self._answer(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(12)
            with lock:
                state.codes[code] = query.get("redirect_uri", "")
            self.send_response(302)
            target = f"{query.get('redirect_uri')}?{urlencode({'code': code, 'state': query.get('state', '')})}"
            self.send_header("location", target)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            path = urlsplit(self.path).path
            if path == "/introspect":
                with lock:
                    active = form.get("token") in state.access_tokens
                self._answer(200, {"active": active, "email": state.user} if active else {"active": False})
                return
            if path != "/token":
                self._answer(404, {"error": "not_found"})
                return
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                self._answer(401, {"error": "invalid_client", "error_description": "Unauthorized"})
                return
            with lock:
                grant = form.get("grant_type")
                if grant == "authorization_code":
                    redirect = state.codes.pop(form.get("code", ""), None)
                    if redirect is None or redirect != form.get("redirect_uri"):
                        self._answer(400, {"error": "invalid_grant", "error_description": "Bad Request"})
                        return
                    refresh = secrets.token_urlsafe(16)
                    state.refresh_tokens.add(refresh)
                elif grant == "refresh_token":
                    refresh = form.get("refresh_token", "")
                    if refresh not in state.refresh_tokens:
                        self._answer(
                            400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                        )
                        return
                    state.refreshes += 1
                else:
                    self._answer(400, {"error": "unsupported_grant_type"})
                    return
                access = "ya29." + secrets.token_urlsafe(24)
                state.access_tokens.add(access)
            body = {
                "access_token": access,
                "expires_in": state.expires_in,
                "scope": "https://mail.google.com/",
                "token_type": "Bearer",
            }
            if grant == "authorization_code":
                body["refresh_token"] = refresh
            self._answer(200, body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
