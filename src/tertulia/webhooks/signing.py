"""The Standard Webhooks signature (https://www.standardwebhooks.com/, the spec's "symmetric" scheme).

A secret is "whsec_" + base64 of 24 random bytes. Each request carries
`webhook-id` (the message id, the same on every retry), `webhook-timestamp` (Unix seconds) and
`webhook-signature`: "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the key is the
base64-decoded part of the secret. Several signatures are separated by spaces: while a rotated-out
secret is still honoured, each request is signed with both.
"""

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secrets_in_use: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_in_use),
    }


def secrets_in_use(stored: dict[str, object], now_iso: str) -> list[str]:
    """The secrets a request is signed with now: the current one, and the previous one until
    `previous_until` (a day after a rotation)."""
    used = [str(stored["current"])] if stored.get("current") else []
    until = stored.get("previous_until")
    if stored.get("previous") and isinstance(until, str) and until > now_iso:
        used.append(str(stored["previous"]))
    return used
