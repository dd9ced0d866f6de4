"""Where webhooks may go: never to private, loopback, link-local or otherwise special addresses
(the server's own network), unless the installation allows it (TERTULIA_WEBHOOKS_ALLOW_PRIVATE).

The check runs twice: when an endpoint is saved (the URL's shape: https, or http only to a private
host when allowed; a literal address), and at every send on the addresses the host name resolves to
then. The request is made to the address that was checked (the host name goes in the Host header
and TLS's SNI and certificate check), so a DNS answer that changes between check and connect (DNS
rebinding) cannot steer it elsewhere.
"""

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(Exception):
    """The URL may not be called (its message says why)."""


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, not covered by is_private


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    special = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
    if isinstance(address, ipaddress.IPv6Address):
        return not (special or address.is_site_local)
    return not (special or address in _SHARED)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


LOCAL_NAMES = ("localhost", "localhost.localdomain")


def check_url_shape(url: str, *, allow_private: bool) -> str:
    """The URL cleaned, or a ValueError naming what is wrong (for a form or an API error)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError("is not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not contain a user name or password")
    host = parts.hostname.lower()
    literal = _literal(host)
    local = host in LOCAL_NAMES or host.endswith(".localhost") or (literal is not None and not is_public(literal))
    if local and not allow_private:
        raise ValueError("points to a private or local address, which this server does not allow")
    if parts.scheme == "http" and not (local and allow_private):
        raise ValueError("must use https (plain http is only allowed to local addresses when the server allows them)")
    if port == 0:
        raise ValueError("is not a valid URL")
    return url


@dataclass(frozen=True)
class Target:
    host: str  # the name in the URL (Host header, SNI)
    address: str  # the checked address to connect to
    port: int
    scheme: str


def resolve(url: str, *, allow_private: bool, also_allowed: Callable[[IPAddress], bool] | None = None) -> Target:
    """Resolve the URL's host now and pick an address that may be called (AddressRefused if none).
    `also_allowed` lets a caller accept some private addresses (a workspace's allowed hosts)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AddressRefused(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        found = _literal(str(info[4][0]).split("%", 1)[0])
        if found is not None and found not in addresses:
            addresses.append(found)
    if not addresses:
        raise AddressRefused(f"{host} has no address")
    if not allow_private:
        refused = [a for a in addresses if not is_public(a) and not (also_allowed and also_allowed(a))]
        if refused:
            # Any private answer refuses the whole name: picking the public one would leave the
            # endpoint to whichever address the resolver lists first next time.
            raise AddressRefused(f"{host} resolves to a private or local address ({refused[0]}), not allowed")
    return Target(host=host, address=str(addresses[0]), port=port, scheme=parts.scheme)
