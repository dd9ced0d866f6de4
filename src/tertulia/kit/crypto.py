"""Encryption at rest for small secrets kept in the database (channel tokens, app secrets, HMAC keys).

Guarantees:
- The database never holds the plaintext: `EncryptedJSON` encrypts on the way in and decrypts on
  the way out, so a copied database or backup alone reveals nothing.
- The key is never the instance secret itself: each purpose (e.g. ``"channels.secrets"``) gets its
  own 256-bit key derived from it with HKDF-SHA256, so a key for one purpose says nothing about
  another, nor about the API-token HMAC key (`kit.security`).
- Encryption is Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`): a value altered in the database
  fails authentication instead of decrypting to garbage.
- A wrong key fails loudly: `SecretKeyError` names the purpose, the key id the value was stored under
  and the key ids this process has, never a silent empty value.

Stored format: ``v1:<key id>:<Fernet token>``. The key id is a fingerprint of the derived key, so
values written under an earlier instance secret can be recognised and decrypted during a rotation.

Rotating the instance secret (see docs/architecture.md, "Secrets"): set the new
`TERTULIA_SECRET_KEY`, list the old one in `TERTULIA_PREVIOUS_SECRET_KEYS`, then run
`tertulia reencrypt-secrets` (`reencrypt_all`: every value is read with whichever key it names and
written under the current one); once it reports nothing left, drop the old secret from the list.
"""

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, MetaData, Text, TypeDecorator, column, select, table, update
from sqlalchemy.engine import Dialect

from tertulia.kit.settings import get_settings

FORMAT_VERSION = "v1"
_INFO_PREFIX = b"tertulia encrypted column v1: "


class SecretKeyError(RuntimeError):
    """A stored secret cannot be decrypted with the keys this process has (wrong or changed instance
    secret, a value altered in the database, or a column that was never encrypted)."""


@dataclass(frozen=True)
class _Key:
    key_id: str
    fernet: Fernet


def _derive(instance_secret: str, purpose: str) -> _Key:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO_PREFIX + purpose.encode()).derive(
        instance_secret.encode()
    )
    # A fingerprint of the derived key, not of the instance secret: it reveals nothing usable.
    key_id = hashlib.sha256(b"key id: " + raw).hexdigest()[:8]
    return _Key(key_id, Fernet(base64.urlsafe_b64encode(raw)))


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per settings, cached by `_keyring`
class Keyring:
    """The current key (used to encrypt) and the keys of previous instance secrets (to decrypt only)."""

    purpose: str
    current: _Key
    by_id: dict[str, _Key]

    def encrypt(self, plaintext: bytes) -> str:
        token = self.current.fernet.encrypt(plaintext).decode("ascii")
        return f"{FORMAT_VERSION}:{self.current.key_id}:{token}"

    def decrypt(self, stored: str) -> bytes:
        version, _, rest = stored.partition(":")
        key_id, _, token = rest.partition(":")
        if version != FORMAT_VERSION or not key_id or not token:
            raise SecretKeyError(
                f"{self.purpose}: the stored value is not in the encrypted format (are migrations run?)"
            )
        key = self.by_id.get(key_id)
        if key is None:
            raise SecretKeyError(
                f"{self.purpose}: stored under key id {key_id}, but this process has {sorted(self.by_id)}; "
                "the instance secret (TERTULIA_SECRET_KEY or data/secret.key) is not the one it was saved with. "
                "Restore it, or list the old one in TERTULIA_PREVIOUS_SECRET_KEYS."
            )
        try:
            return key.fernet.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise SecretKeyError(
                f"{self.purpose}: the stored value under key id {key_id} fails authentication"
            ) from exc

    def is_current(self, stored: str) -> bool:
        return stored.startswith(f"{FORMAT_VERSION}:{self.current.key_id}:")


@lru_cache(maxsize=32)
def _keyring(purpose: str, instance_secret: str, previous: tuple[str, ...]) -> Keyring:
    current = _derive(instance_secret, purpose)
    by_id = {key.key_id: key for key in (_derive(old, purpose) for old in previous)}
    by_id[current.key_id] = current
    return Keyring(purpose, current, by_id)


def keyring(purpose: str) -> Keyring:
    """The keys for `purpose`, from the instance secret as the app resolves it (settings)."""
    settings = get_settings()
    previous = tuple(settings.previous_secret_keys.replace(",", " ").split())
    return _keyring(purpose, settings.resolved_secret_key(), previous)


def encrypt_json(purpose: str, value: Any) -> str:
    return keyring(purpose).encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def decrypt_json(purpose: str, stored: str) -> Any:
    return json.loads(_decrypt_cached(keyring(purpose), stored))


@lru_cache(maxsize=4096)
def _decrypt_cached(ring: Keyring, stored: str) -> bytes:
    # A channel row is loaded on every widget and callback request, and a stored value only changes
    # when it is written (each write has a fresh IV): decrypt each value once per keyring. Failures
    # are not cached. The caller gets a fresh object from the plaintext each time.
    return ring.decrypt(stored)


class EncryptedJSON(TypeDecorator[dict[str, Any]]):
    """A JSON object stored encrypted in a TEXT column; `purpose` names the derived key."""

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt_json(self.purpose, value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, Any] | None:
        if value is None:
            return None
        decrypted = decrypt_json(self.purpose, value)
        if not isinstance(decrypted, dict):
            raise SecretKeyError(f"{self.purpose}: the decrypted value is not a JSON object")
        return decrypted


def reencrypt_column(connection: Connection, table_name: str, column_name: str, purpose: str) -> int:
    """Rewrite every value of an encrypted column (of a table keyed by `id`) under the current key,
    after a rotation; returns how many rows changed. The caller owns the transaction."""
    ring = keyring(purpose)
    target = table(table_name, column("id"), column(column_name))
    changed = 0
    for row_id, stored in connection.execute(select(target.c.id, target.c[column_name])).all():
        if stored is None or ring.is_current(stored):
            continue
        fresh = ring.encrypt(ring.decrypt(stored))
        connection.execute(update(target).where(target.c.id == row_id).values({column_name: fresh}))
        changed += 1
    return changed


def reencrypt_all(connection: Connection, metadata: MetaData) -> int:
    """`reencrypt_column` for every `EncryptedJSON` column of `metadata`."""
    return sum(
        reencrypt_column(connection, tbl.name, col.name, col.type.purpose)
        for tbl in metadata.sorted_tables
        for col in tbl.columns
        if isinstance(col.type, EncryptedJSON)
    )
