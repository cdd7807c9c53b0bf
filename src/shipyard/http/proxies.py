"""Who the client is behind a reverse proxy.

`X-Forwarded-For` is believed only when the direct peer is one of the
`trusted_proxies` (addresses or CIDR networks). The list is then read from the right,
skipping trusted hops: the first untrusted address is the client, since everything to
its left was written by the client itself and proves nothing. Without trusted proxies
(the default) the socket peer is the client and the header is ignored.

`ProxyHeaders.apply` rewrites the ASGI scope's `client` once, before dispatch, so every
reader (throttling, the audit log, records) sees the same address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.1', '10.0.0.0/8', '::1' -> networks; raises ValueError naming a bad one."""
    found = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return tuple(found)


def _address(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyHeaders:
    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks = parse_networks(trusted)
        self._trusted_cache: dict[str, bool] = {}

    def trusts(self, host: str) -> bool:
        known = self._trusted_cache.get(host)
        if known is None:
            address = _address(host)
            known = address is not None and any(address in n for n in self.networks)
            if len(self._trusted_cache) > 1024:
                self._trusted_cache.clear()
            self._trusted_cache[host] = known
        return known

    def client(self, peer: str, forwarded: list[bytes]) -> str:
        """The client's address given the socket peer and the X-Forwarded-For values."""
        if not self.networks or not forwarded or not self.trusts(peer):
            return peer
        hops = [h for value in forwarded for h in value.decode("latin-1").split(",")]
        nearest = peer
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:  # garbage left of a trusted hop: the nearest we know
                return nearest
            if not self.trusts(str(address)):
                return str(address)
            nearest = str(address)
        return nearest  # every hop is a trusted proxy: the farthest one

    def apply(self, scope: Scope) -> None:
        if not self.networks:
            return
        peer = scope.get("client")
        if not peer:
            return
        forwarded = [v for k, v in scope["headers"] if k == b"x-forwarded-for"]
        if forwarded:
            scope["client"] = (self.client(peer[0], forwarded), peer[1])
