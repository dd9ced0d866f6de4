"""Passwords (argon2), random tokens, and token hashing (HMAC under the installation secret)."""

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tertulia.kit.settings import get_settings


@lru_cache
def _hasher() -> PasswordHasher:
    settings = get_settings()
    return PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_cost)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend comparable time so a missing account is not told apart by timing.
        _hasher().hash(password)
        return False
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """Keyed digest: a stolen database alone cannot be used to test token guesses offline."""
    key = get_settings().resolved_secret_key().encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def purpose_key(purpose: str) -> bytes:
    """A key of its own for each use of the installation secret (a signature made for one purpose is
    worthless for another)."""
    root = get_settings().resolved_secret_key().encode()
    return hmac.new(root, purpose.encode(), hashlib.sha256).digest()


def sign(purpose: str, message: str) -> str:
    """URL-safe HMAC-SHA256 of `message` under `purpose`'s key (43 characters)."""
    digest = hmac.new(purpose_key(purpose), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def same_secret(sent: str, expected: str) -> bool:
    """Constant-time comparison of a value a client sent with the expected one. On `str`,
    hmac.compare_digest raises TypeError for non-ASCII text, which a client chooses."""
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def signature_matches(purpose: str, message: str, signature: str) -> bool:
    return same_secret(signature, sign(purpose, message))
