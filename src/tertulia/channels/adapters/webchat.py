"""The web-chat adapter: the provider side of the chat widget, and the visitor tokens.

The widget's public endpoints, CORS and the visitor's socket are the inbox's entry points
(conversations/ingress/widget.py); this module only knows the protocol:

- visitor tokens: HMAC-signed claims `{ch, sub, exp, name?, email?, typ?}` under a key derived from
  the instance secret; `sub` is the visitor's identity on this channel, "<channel id>:v:<random>" for
  an anonymous visitor or "<channel id>:u:<site user id>" for one the site vouched for with
  `user_hash` = hex HMAC-SHA256(identity_secret, user_id). Two kinds:
  - the visitor token (`issue_token`/`read_token`, no `typ`), which the widget keeps and sends only
    in the body of `POST /widget/{key}/session` to be remembered (months; renewed at each visit);
  - access tokens (`issue_access_token`/`read_access_token`, `typ` "access"), the only credential
    the visitor's requests and socket carry, valid for an hour: one that leaks (a log, a proxy) soon
    stops working. Neither kind is accepted where the other is expected;
- server callbacks: the site's own server may post its signed-in users' messages (from its app or
  a contact form) to the channel's callback URL, `/webhooks/{key}`:

      POST  body {"messages": [{"id", "user_id", "text", "name"?, "email"?}]}
            header X-Tertulia-Signature: sha256=<hex HMAC-SHA256(identity_secret, raw body)>
      GET   ?challenge=<text>&signature=<hex HMAC-SHA256(identity_secret, text)> -> the challenge

  Each message lands under the same identity ("<channel id>:u:<user_id>") and the same dedupe key
  ("<identity>:<id>") as the widget's own messages of that user, so a message relayed twice, or
  through both ways, is stored once. The identity secret already lets that server vouch for who
  a visitor is; these callbacks need no more trust than that.

Sending is ours alone (the visitor reads it from the inbox's socket): there is no provider to
refuse anything, so web chat raises no `ChannelError` and never goes into error.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    InboundMessage,
    OutboundMessage,
    ParsedWebhook,
    SendResult,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.kit.errors import PermissionDenied, Unauthorized, ValidationFailed
from tertulia.kit.security import same_secret
from tertulia.kit.settings import get_settings
from tertulia.kit.text import tidy_name

TYPE = "webchat"
SIGNATURE_HEADER = "x-tertulia-signature"
HEX_COLOUR = "#"
POSITIONS = ("right", "left")
MAX_ORIGINS = 50


def _clean_origin(value: Any, index: int) -> str:
    if value == "*":
        return "*"
    if not isinstance(value, str):
        raise ValidationFailed.field(f"allowed_origins[{index}]", "must be an origin like https://example.com")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValidationFailed.field(f"allowed_origins[{index}]", "must be an origin like https://example.com")
    return f"{parts.scheme}://{parts.netloc.lower()}"


class WebchatAdapter:
    type: ClassVar[str] = TYPE
    # The visitor's socket gets the reply as soon as it commits; there is no provider to fail.
    rules: ClassVar[ChannelRules] = ChannelRules(reply_window=None, max_text_length=10_000)
    secret_fields: ClassVar[frozenset[str]] = frozenset({"identity_secret"})

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        if request.method == "GET":
            challenge = request.query.get("challenge", "")
            if not challenge or not _signed(channel, challenge.encode(), request.query.get("signature", "")):
                raise WebhookRejected("bad handshake signature")
            return
        header = request.headers.get(SIGNATURE_HEADER, "")
        if not header.startswith("sha256=") or not _signed(channel, request.body, header.removeprefix("sha256=")):
            raise WebhookRejected("bad signature")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is not the documented shape."""
        if request.method == "GET":
            return ParsedWebhook(reply=request.query.get("challenge", ""))
        data = json.loads(request.body)
        items = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ValueError('expected {"messages": [...]}')
        return ParsedWebhook(messages=[_server_message(channel, item) for item in items])

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"webchat:{message.message_id}")

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {
            "name": channel.name,
            "theme": config.get("theme", {}),
            "ask_name": bool(config.get("ask_name")),
            "ask_email": bool(config.get("ask_email")),
            "identity_verification": bool(config.get("identity_verification")),
        }

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        origins = config.get("allowed_origins") or []
        if not isinstance(origins, list) or len(origins) > MAX_ORIGINS:
            raise ValidationFailed.field("config.allowed_origins", f"must be a list of at most {MAX_ORIGINS} origins")
        theme_in = config.get("theme") or {}
        if not isinstance(theme_in, dict):
            raise ValidationFailed.field("config.theme", "must be an object")
        colour = str(theme_in.get("color", "#2563eb"))
        if (
            len(colour) != 7
            or not colour.startswith(HEX_COLOUR)
            or any(c not in "0123456789abcdefABCDEF" for c in colour[1:])
        ):
            raise ValidationFailed.field("config.theme.color", "must be a colour like #2563eb")
        position = str(theme_in.get("position", "right"))
        if position not in POSITIONS:
            raise ValidationFailed.field("config.theme.position", "must be right or left")
        greeting = str(theme_in.get("greeting", ""))[:500]
        avatars = theme_in.get("avatars") or []
        if not isinstance(avatars, list) or not all(isinstance(a, str) and a.startswith("https://") for a in avatars):
            raise ValidationFailed.field("config.theme.avatars", "must be a list of https:// image URLs")
        cleaned = {
            "allowed_origins": sorted({_clean_origin(o, i) for i, o in enumerate(origins)}),
            "theme": {"color": colour.lower(), "position": position, "greeting": greeting, "avatars": avatars[:5]},
            "ask_name": bool(config.get("ask_name", False)),
            "ask_email": bool(config.get("ask_email", False)),
            "identity_verification": bool(config.get("identity_verification", False)),
        }
        kept = dict(secrets_)
        kept.setdefault("identity_secret", secrets.token_urlsafe(32))
        return cleaned, kept

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        return external_id.startswith(f"{channel.id}:")


# ----- visitor tokens and identity verification ----------------------------------------------


def _signing_key(channel: Channel) -> bytes:
    """Per channel, and derived from the channel's identity secret as well as the server's key: a
    new identity secret (Settings > Channels) revokes every visitor and access token of that widget
    at once, which a token valid for a year otherwise could not be."""
    root = get_settings().resolved_secret_key().encode()
    widget_secret = str((channel.secrets or {}).get("identity_secret", ""))
    return hmac.new(root, b"webchat-visitor-token\x00" + widget_secret.encode(), hashlib.sha256).digest()


def _legacy_signing_key() -> bytes:
    """The key of visitor tokens issued before they were signed per channel: still read (only as
    kept visitor tokens, which /session trades for new ones), so visitors keep their conversation."""
    root = get_settings().resolved_secret_key().encode()
    return hmac.new(root, b"webchat-visitor-token", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Visitor:
    channel_id: int
    external_id: str  # "<channel id>:v:<random>" or "<channel id>:u:<site user id>"
    name: str | None
    email: str | None
    expires_at: int
    # The visitor's identity's token generation when this was issued: a token of an older generation
    # is revoked (the contact was blocked, or its sessions ended). The widget's endpoints check it.
    generation: int = 0


ACCESS = "access"


def _issue(visitor: Visitor, channel: Channel, kind: str | None) -> str:
    claims: dict[str, Any] = {"ch": visitor.channel_id, "sub": visitor.external_id, "exp": visitor.expires_at}
    if visitor.name:
        claims["name"] = visitor.name
    if visitor.email:
        claims["email"] = visitor.email
    if kind is not None:
        claims["typ"] = kind
    if visitor.generation:
        claims["gen"] = visitor.generation
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_signing_key(channel), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def issue_token(visitor: Visitor, channel: Channel) -> str:
    """The visitor token the widget keeps (valid until `visitor.expires_at`, or a new identity secret)."""
    return _issue(visitor, channel, None)


def issue_access_token(visitor: Visitor, channel: Channel) -> str:
    """A short-lived access token (valid until `visitor.expires_at`) for the visitor's requests and socket."""
    return _issue(visitor, channel, ACCESS)


def _read(token: str | None, channel: Channel, kind: str | None) -> Visitor:
    if not token or token.count(".") != 1:
        raise Unauthorized("Missing or malformed visitor token.")
    body, signature = token.split(".")
    expected = _b64(hmac.new(_signing_key(channel), body.encode(), hashlib.sha256).digest())
    legacy = _b64(hmac.new(_legacy_signing_key(), body.encode(), hashlib.sha256).digest())
    if not (same_secret(signature, expected) or (kind is None and same_secret(signature, legacy))):
        raise Unauthorized("Invalid visitor token.")
    try:
        claims = json.loads(_unb64(body))
    except ValueError as exc:
        raise Unauthorized("Invalid visitor token.") from exc
    if not isinstance(claims, dict) or claims.get("typ") != kind:
        raise Unauthorized("Use an access token from /session here." if kind else "Not a visitor token.")
    if claims.get("ch") != channel.id or not str(claims.get("sub", "")).startswith(f"{channel.id}:"):
        raise Unauthorized("This token belongs to another widget.")
    if int(claims.get("exp", 0)) < time.time():
        raise Unauthorized("The visitor token has expired.", code="token_expired")
    generation = claims.get("gen", 0)
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise Unauthorized("Invalid visitor token.")
    return Visitor(
        channel.id, str(claims["sub"]), claims.get("name"), claims.get("email"), int(claims["exp"]), generation
    )


def read_token(token: str | None, channel: Channel) -> Visitor:
    """The visitor a kept visitor token names (also the tokens issued before access tokens existed)."""
    return _read(token, channel, None)


def read_access_token(token: str | None, channel: Channel) -> Visitor:
    return _read(token, channel, ACCESS)


def user_hash(channel: Channel, user_id: str) -> str:
    return callback_signature(channel, user_id.encode())


def snippet(base_url: str, key: str) -> str:
    """The one line a site pastes before its closing body tag (the channel's page shows it; the
    platform guides, docs/channels/webchat-*.md, add the data attributes of a signed-in user)."""
    return f'<script src="{base_url.rstrip("/")}/widget/{key}.js" async></script>'


def check_origin(channel: Channel, origin: str | None) -> str | None:
    """The origin to echo in CORS headers; None when the request has no Origin (not a browser
    cross-origin call). A browser on a site not in the list is refused."""
    if origin is None:
        return None
    allowed = (channel.config or {}).get("allowed_origins") or []
    if "*" in allowed or origin.lower() in allowed:
        return origin
    raise PermissionDenied("This site may not embed this chat widget.", code="origin_not_allowed")


def callback_signature(channel: Channel, data: bytes) -> str:
    """Hex HMAC-SHA256 under the channel's identity secret: what the site's server sends with a
    callback (over the raw body), a handshake (over the challenge) and a `user_hash` (over the id)."""
    secret = str((channel.secrets or {}).get("identity_secret", ""))
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def _signed(channel: Channel, data: bytes, signature: str) -> bool:
    secret = (channel.secrets or {}).get("identity_secret")
    return bool(secret) and same_secret(signature.lower(), callback_signature(channel, data))


def _server_message(channel: Channel, item: Any) -> InboundMessage:
    if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k] for k in ("id", "user_id")):
        raise ValueError("each message needs a string id and user_id")
    name = tidy_name(str(item.get("name") or "")) or None
    first, _, last = (name or "").partition(" ")
    sender = f"{channel.id}:u:{item['user_id'][:200]}"
    text = item.get("text")
    return InboundMessage(
        sender_id=sender,
        provider_message_id=f"{sender}:{item['id']}"[:200],
        text=text if isinstance(text, str) else None,
        display_name=name,
        first_name=first or None,
        last_name=last or None,
        email=item["email"] if isinstance(item.get("email"), str) else None,
        payload={"via": "server"},
    )
