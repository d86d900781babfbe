"""Where integrations may send: only to public networks, unless the operator allows
private ones (INTEGRATIONS_ALLOW_PRIVATE_NETWORKS=true).

A destination is refused when its host is, or resolves to, an address that is not
globally reachable: loopback, private, link-local, shared, reserved, multicast,
unspecified, and IPv6 forms that carry such an IPv4 address (mapped, 6to4, Teredo, NAT64).
The check runs when an integration is created or changed, and again on every connection
the sender opens (http_post connects to the very addresses checked here, so a name that
resolves differently later is still caught). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Names that always mean this machine (RFC 6761), whatever a resolver says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
RESOLVE_TIMEOUT = 3.0


class DestinationRefused(Exception):
    """The destination is on a network integrations may not reach; the message says why."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses a name resolves to (the system's resolver)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: Address) -> str | None:
    """Why an address is not on a public network (None: it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "a scoped (link-local) IPv6 address"
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = non_public_reason(inner)
            return None if reason is None else f"an IPv6 form of {inner}, {reason}"
    for test, reason in (
        (address.is_loopback, "loopback"), (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"), (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"), (address.is_private, "private"),
    ):
        if test:
            return f"a {reason} address"
    if not address.is_global:
        return "not a globally reachable address"
    return None


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class NetworkPolicy:
    """What integrations may reach: public networks, the `allowed` networks (addresses
    the operator trusts), or anything when `allow_private`. `resolver` is the system's
    unless given."""

    allow_private: bool = False
    allowed: tuple[Network, ...] = ()
    resolver: Resolver = field(default=resolve)

    def check_addresses(self, host: str, addresses: Sequence[str]) -> None:
        for text in addresses:
            address = literal_address(text)
            if address is None:
                raise DestinationRefused(f"{host} resolved to {text!r}, not an address")
            if any(address.version == n.version and address in n for n in self.allowed):
                continue
            reason = non_public_reason(address)
            if reason is not None:
                shown = host if host == text else f"{host} ({text})"
                raise DestinationRefused(
                    f"{shown} is {reason}: integrations send only to public networks")

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of a host (DestinationRefused if any is not public)."""
        if self.allow_private:
            literal = literal_address(host)
            return [str(literal)] if literal is not None else list(self.resolver(host, port))
        literal = literal_address(host)
        name = host.rstrip(".").lower()
        if literal is None and (name in _LOCAL_NAMES or name.endswith(".localhost")):
            raise DestinationRefused(f"{host} is this machine: integrations send only to "
                                     "public networks")
        addresses = [str(literal)] if literal is not None else list(self.resolver(host, port))
        if not addresses:
            raise DestinationRefused(f"{host} resolves to no address")
        self.check_addresses(host, addresses)
        return addresses

    def check_url(self, url: str) -> None:
        """Refuses a URL whose host is not public. A name that cannot be resolved now is
        let through (it is checked again on every connection)."""
        if self.allow_private:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if literal_address(host) is not None or host.rstrip(".").lower() in _LOCAL_NAMES \
                or host.rstrip(".").lower().endswith(".localhost"):
            self.addresses(host, port)
            return
        try:
            found = _bounded(self.resolver, host, port)
        except (OSError, FutureTimeout):
            return  # unknown now; every connection checks again
        self.check_addresses(host, found)


_lookups = ThreadPoolExecutor(4, thread_name_prefix="resolve")


def _bounded(resolver: Resolver, host: str, port: int) -> Sequence[str]:
    """A lookup that gives up waiting after RESOLVE_TIMEOUT (getaddrinfo cannot be
    cancelled, so it finishes in the background)."""
    return _lookups.submit(resolver, host, port).result(timeout=RESOLVE_TIMEOUT)
