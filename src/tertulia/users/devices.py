"""Known devices: a browser where someone has signed in before keeps its own sign-in throttle.

Failed sign-ins lock an account's email and the client's address for a while (users/sessions.py).
Anyone can cause those failures, so on their own they would let a stranger keep a person out. A
successful sign-in therefore leaves a signed cookie naming the device and the accounts signed in on
it; with it, that person's sign-ins on that device are counted under a key of the device and the
account alone, and failures made elsewhere do not hold them back. Guessing from a known device is
still throttled, under its own key.

The cookie names accounts by a keyed digest of their email, never the email itself, and is signed
with a key of its own derived from the installation secret, so it cannot be made up or edited.
"""

import base64
import binascii
import json
from dataclasses import dataclass

from tertulia.kit.security import new_token, sign, signature_matches

DEVICE_COOKIE = "tertulia_device"
KNOWN_DEVICE_DAYS = 365
# A shared computer: the accounts signed in most recently are remembered.
MAX_ACCOUNTS = 5
_PURPOSE = "known-device"
_ACCOUNT_PURPOSE = "known-device-account"


@dataclass(frozen=True)
class KnownDevice:
    device_id: str
    accounts: tuple[str, ...]  # account_tag of each email signed in here, most recent first


def account_tag(email: str) -> str:
    return sign(_ACCOUNT_PURPOSE, email.strip().lower())[:22]


def read_device(cookie: str | None) -> KnownDevice | None:
    """The device a cookie names, or None when there is none or it was not made by this installation."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    if not signature_matches(_PURPOSE, body, signature):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    device_id, accounts = claims.get("d"), claims.get("a")
    if not isinstance(device_id, str) or not isinstance(accounts, list):
        return None
    return KnownDevice(device_id, tuple(a for a in accounts if isinstance(a, str)))


def known_device_for(cookie: str | None, email: str) -> str | None:
    """The device id when the cookie says this account has signed in on this device before."""
    device = read_device(cookie)
    if device is None or account_tag(email) not in device.accounts:
        return None
    return device.device_id


def remember_account(cookie: str | None, email: str) -> str:
    """The cookie value after `email` signed in here: the same device, this account first."""
    device = read_device(cookie) or KnownDevice(new_token(nbytes=16), ())
    tag = account_tag(email)
    accounts = (tag, *[a for a in device.accounts if a != tag])[:MAX_ACCOUNTS]
    claims = json.dumps({"d": device.device_id, "a": list(accounts)}, separators=(",", ":"))
    body = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    return f"{body}.{sign(_PURPOSE, body)}"
