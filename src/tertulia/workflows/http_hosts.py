"""The hosts a workspace's HTTP request steps may call although they are private or local.

An HTTP request step never calls the server's own network (private, loopback, link-local and other
special addresses: `webhooks.addresses`), unless the installation allows it for everyone
(`TERTULIA_WEBHOOKS_ALLOW_PRIVATE`) or the workspace lists the host. Owners and managers edit the
list (Settings > Workflow HTTP hosts, `PUT /api/v1/workflow-settings/http-hosts`); each entry is

- a host name, `crm.internal`, or every name under a domain, `*.corp.example`: the URL's host
  name may resolve to any address;
- an IP address, `10.0.0.5`, or a network, `10.20.0.0/16` (at most /8 wide): the URL's host (a name
  or the address itself) may resolve into it.

The check is made when the request is sent, on the addresses the host name resolves to then, and
the request goes to the address that was checked (`webhooks.addresses.resolve`), so a name that
later resolves elsewhere (DNS rebinding) cannot steer it to an address the list does not allow. An
address listed neither by name nor by network refuses the whole name, as for webhooks.
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.errors import ValidationFailed
from tertulia.users.permissions import Actor, Permission
from tertulia.webhooks.addresses import AddressRefused, IPAddress, Target, check_url_shape, resolve
from tertulia.workflows.models import WorkflowHttpHost

MAX_HOSTS = 50
MAX_ENTRY_CHARS = 255
# A network wider than this would open most of the private ranges at once (0.0.0.0/0 is everything).
MIN_PREFIX = 8

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What is wrong with an entry; the page translates these (workflows/settings_views.py).
INVALID = "%(entry)s is not a host name, an IP address or a network"
TOO_WIDE = "%(entry)s is too wide a network (at most /8)"
TOO_MANY = "at most %(max)d hosts"
HINT = "allow it in Settings > Workflow HTTP hosts"


@dataclass(frozen=True)
class Problem:
    index: int  # the entry's position in the list given
    entry: str  # as given
    message: str  # INVALID or TOO_WIDE


def parse_entry(text: str) -> str:
    """The entry normalised (lower-case name, `*.domain`, address or network), or ValueError with
    INVALID or TOO_WIDE."""
    value = text.strip().lower().rstrip(".")
    if not value or len(value) > MAX_ENTRY_CHARS:
        raise ValueError(INVALID)
    if "/" in value:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(INVALID) from exc
        if network.prefixlen < MIN_PREFIX:
            raise ValueError(TOO_WIDE)
        return str(network)
    address = _address(value.removeprefix("[").removesuffix("]"))
    if address is not None:
        return str(address)
    wildcard = value.startswith("*.")
    name = _host_name(value.removeprefix("*."))
    if name is None:
        raise ValueError(INVALID)
    return f"*.{name}" if wildcard else name


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _host_name(text: str) -> str | None:
    """A DNS name in ASCII (an international name in its punycode form), or None."""
    try:
        name = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        return None
    labels = name.split(".")
    if len(name) > 253 or not all(_label(label) for label in labels):
        return None
    if labels[-1].isdigit():  # "10.0.0" or "300.1.1.1": a mistyped address, not a name
        return None
    return name


def _label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )


def problems(values: Sequence[str]) -> tuple[list[str], list[Problem]]:
    """The list cleaned (blank entries skipped, repeats once, in the order given) and what is wrong
    with each bad entry."""
    cleaned: list[str] = []
    found: list[Problem] = []
    for index, value in enumerate(values):
        if not value.strip():
            continue
        try:
            entry = parse_entry(value)
        except ValueError as exc:
            found.append(Problem(index, value.strip(), str(exc)))
            continue
        if entry not in cleaned:
            cleaned.append(entry)
    return cleaned, found


def clean_hosts(values: Sequence[str]) -> list[str]:
    """The list to store, or ValidationFailed naming each bad entry (`hosts[2]`) or `hosts`."""
    cleaned, found = problems(values)
    if found:
        details = {f"hosts[{p.index}]": p.message % {"entry": repr(p.entry)} for p in found}
        raise ValidationFailed("Some hosts are not valid.", details=details)
    if len(cleaned) > MAX_HOSTS:
        raise ValidationFailed.field("hosts", TOO_MANY % {"max": MAX_HOSTS})
    return cleaned


# ----- the stored list -------------------------------------------------------------------------------


def allowed_hosts(session: Session, workspace_id: int) -> tuple[str, ...]:
    query = select(WorkflowHttpHost.host).where(WorkflowHttpHost.workspace_id == workspace_id)
    return tuple(session.scalars(query.order_by(WorkflowHttpHost.id)))


def http_hosts(session: Session, actor: Actor) -> list[str]:
    """The workspace's list, for those who build workflows."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    return list(allowed_hosts(session, actor.workspace_id))


def do_set_http_hosts(session: Session, actor: Actor, values: Sequence[str]) -> list[str]:
    """Replace the workspace's list. Opening the private network is a workspace setting: owners and
    managers (`manage_workspace`), not API tokens, which a leak would otherwise turn against it."""
    actor.require(Permission.MANAGE_WORKSPACE)
    cleaned = clean_hosts(values)
    session.execute(delete(WorkflowHttpHost).where(WorkflowHttpHost.workspace_id == actor.workspace_id))
    now = utcnow()
    session.add_all(WorkflowHttpHost(workspace_id=actor.workspace_id, host=host, created_at=now) for host in cleaned)
    session.flush()
    return cleaned


# ----- at run time ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostList:
    names: frozenset[str]
    domains: tuple[str, ...]  # "*.corp.example" stored as "corp.example"
    networks: tuple[IPNetwork, ...]

    @classmethod
    def of(cls, entries: Sequence[str]) -> "HostList":
        names: set[str] = set()
        domains: list[str] = []
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                domains.append(entry[2:])
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(domains), tuple(networks))

    def names_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or any(host.endswith(f".{domain}") for domain in self.domains)

    def covers(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == network.version and address in network for network in self.networks)

    def lists(self, host: str) -> bool:
        """Whether the URL's host itself is on the list (by name, or an address in a listed network)."""
        literal = _address(host)
        return self.covers(literal) if literal is not None else self.names_host(host)


def target(url: str, entries: Sequence[str], *, allow_private: bool) -> Target:
    """Where the request goes: the URL checked, its host resolved now and an allowed address picked
    (ValueError or AddressRefused, with the reason)."""
    hosts = HostList.of(entries)
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host and hosts.lists(host):
        # The workspace named this host: plain http and a local name are its call.
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError("is not a valid URL") from exc
        if parts.scheme not in ("http", "https") or parts.username or parts.password or port == 0:
            raise ValueError("must be an http:// or https:// URL without a user name or password")
    else:
        try:
            check_url_shape(url, allow_private=allow_private)
        except ValueError as exc:
            raise ValueError(f"{exc}; {HINT}" if "private" in str(exc) else str(exc)) from exc
    named = hosts.names_host(host)
    try:
        return resolve(url, allow_private=allow_private, also_allowed=lambda address: named or hosts.covers(address))
    except AddressRefused as exc:
        raise AddressRefused(f"{exc}; {HINT}" if "private" in str(exc) else str(exc)) from exc
