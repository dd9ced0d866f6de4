"""OAuth 2.0 for a mailbox (Gmail and Google Workspace, which since 2024-09-30 accept only OAuth or
app passwords on IMAP, POP and SMTP; ../shared/reference/channels.md §0 and §12).

The authorisation-code flow (RFC 6749 §4.1): a manager opens `authorization_url` (Google's consent
page asks for the `https://mail.google.com/` scope with `access_type=offline`, so a refresh token
comes back), the provider returns a code to our redirect URI, and `exchange_code` trades it for the
refresh token we keep (encrypted with the channel's secrets). Access tokens are had from the refresh
token when needed (`access_token`, grant_type=refresh_token, §6) and kept in memory until shortly
before they expire. Both endpoints come from the channel's settings (`oauth_auth_url`,
`oauth_token_url`; Google's by default), so tests run against a local fake authorisation server.
IMAP and SMTP then authenticate with SASL XOAUTH2: `user=<address>^Aauth=Bearer <token>^A^A`.
"""

import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from tertulia.channels.models import Channel
from tertulia.channels.protocol import Fault, PermanentError, TransientError
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.outgoing_http import provider_http

GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
GOOGLE_SCOPE = "https://mail.google.com/"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_tokens: dict[tuple[int, str], tuple[str, float]] = {}
_lock = threading.Lock()


def _url(value: Any, default: str, field: str) -> str:
    url = str(value or default).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment or len(url) > 500:
        raise ValidationFailed.field(field, "must be an http(s) URL")
    return url


def clean_oauth_config(config: dict[str, Any]) -> dict[str, Any]:
    client_id = str(config.get("oauth_client_id") or "").strip()
    if not client_id or len(client_id) > 300:
        raise ValidationFailed.field("config.oauth_client_id", "is required for OAuth (the app's client id)")
    return {
        "oauth_client_id": client_id,
        "oauth_auth_url": _url(config.get("oauth_auth_url"), GOOGLE_AUTH_URL, "config.oauth_auth_url"),
        "oauth_token_url": _url(config.get("oauth_token_url"), GOOGLE_TOKEN_URL, "config.oauth_token_url"),
        "oauth_scope": str(config.get("oauth_scope") or GOOGLE_SCOPE).strip()[:500],
    }


def clean_oauth_secrets(secrets: dict[str, Any]) -> dict[str, Any]:
    client_secret = str(secrets.get("oauth_client_secret") or "")
    if not client_secret:
        raise ValidationFailed.field("secrets.oauth_client_secret", "is required for OAuth (the app's client secret)")
    kept = {"oauth_client_secret": client_secret}
    if secrets.get("oauth_refresh_token"):
        kept["oauth_refresh_token"] = str(secrets["oauth_refresh_token"])
    return kept


def authorization_url(config: dict[str, Any], redirect_uri: str, state: str) -> str:
    """Where to send the manager to grant the mailbox (offline access: a refresh token comes back)."""
    query = {
        "response_type": "code",
        "client_id": config["oauth_client_id"],
        "redirect_uri": redirect_uri,
        "scope": config.get("oauth_scope") or GOOGLE_SCOPE,
        "access_type": "offline",
        "prompt": "consent",
        "state": state,
        "login_hint": config.get("address") or "",
    }
    base = str(config.get("oauth_auth_url") or GOOGLE_AUTH_URL)
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


def _token_call(config: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    try:
        response = provider_http().post(
            str(config.get("oauth_token_url") or GOOGLE_TOKEN_URL), data=form, timeout=TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise TransientError(f"the authorisation server could not be reached: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"the authorisation server answered {response.status_code}")
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        error = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
        # invalid_grant (a revoked or expired refresh token), a deleted client: the mailbox must be
        # authorised again.
        raise PermanentError(
            f"the authorisation server refused: {error or response.status_code}", code="oauth", fault=Fault.CREDENTIALS
        )
    return body


def exchange_code(config: dict[str, Any], secrets: dict[str, Any], code: str, redirect_uri: str) -> dict[str, Any]:
    """The token answer for an authorisation code (its `refresh_token` is what we keep)."""
    return _token_call(
        config,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": str(config.get("oauth_client_id") or ""),
            "client_secret": str(secrets.get("oauth_client_secret") or ""),
        },
    )


def access_token(channel: Channel) -> str:
    """A current access token for the channel's mailbox, refreshed when it is (nearly) expired."""
    config, secrets = channel.config or {}, channel.secrets or {}
    refresh = str(secrets.get("oauth_refresh_token") or "")
    if not refresh:
        raise PermanentError(
            "the mailbox has not been authorised yet (no refresh token)", code="oauth", fault=Fault.CREDENTIALS
        )
    key = (channel.id, refresh)
    with _lock:
        cached = _tokens.get(key)
        if cached is not None and cached[1] > time.monotonic() + 60:
            return cached[0]
    body = _token_call(
        config,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": str(config.get("oauth_client_id") or ""),
            "client_secret": str(secrets.get("oauth_client_secret") or ""),
        },
    )
    token = str(body["access_token"])
    expires = float(body.get("expires_in") or 3600)
    with _lock:
        _tokens[key] = (token, time.monotonic() + expires)
    return token


def forget_tokens() -> None:
    with _lock:
        _tokens.clear()


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response, before base64 (developers.google.com/gmail/imap/xoauth2-protocol)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"
