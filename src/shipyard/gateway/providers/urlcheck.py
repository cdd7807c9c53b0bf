"""Provider base URLs are admin configuration, and Shipyard connects wherever they point
(SSRF). Only public addresses are allowed: loopback, private (RFC 1918, IPv6 ULA),
CGNAT, link-local, reserved, multicast, unspecified and cloud metadata addresses are
refused, in every spelling (IPv4-mapped IPv6, NAT64, 6to4, decimal/octal/hex IPv4, DNS
names resolving to them), unless the provider has `allow_internal` (which only a
platform administrator may set: local model servers such as Ollama or vLLM on the same
host are the legitimate case). The check runs when a provider is configured and again
on every connection (`providers/http.py` CheckedResolver: DNS rebinding)."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from shipyard.errors import InvalidInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_HOSTS = {
    "metadata.google.internal",
    "metadata",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
}
# metadata services that answer on otherwise public-looking addresses
_METADATA_IPS = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("168.63.129.16"),
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# what inet_aton accepts beyond dotted quads: 2130706433, 0x7f.1, 0177.0.0.1
_LOOSE_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")


def check_base_url(url: str, *, allow_internal: bool = False, resolve: bool = True) -> str:
    """Return the normalised URL or raise InvalidInput saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("base_url: must be an http:// or https:// URL")
    try:
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise InvalidInput("base_url: has an invalid host or port") from None
    if not host:
        raise InvalidInput("base_url: has no host")
    if parts.username or parts.password:
        raise InvalidInput("base_url: must not carry credentials; use api_key")
    if parts.query or parts.fragment:
        raise InvalidInput("base_url: must not have a query or fragment")
    check_host(host, field="base_url", allow_internal=allow_internal, resolve=resolve)
    return url.strip().rstrip("/")


def check_host(host: str, *, field: str, allow_internal: bool, resolve: bool = True) -> list[IP]:
    """The addresses `host` names (resolved now), or InvalidInput naming `field` when
    one is internal or a metadata address; with `allow_internal`, nothing is checked
    (and [] returned)."""
    if allow_internal:
        return []
    host = host.lower().rstrip(".")
    found = _addresses(host, resolve)
    if host in _METADATA_HOSTS:
        raise InvalidInput(f"{field}: {host} is a cloud metadata address")
    for ip in found:
        if forbidden(ip):
            raise InvalidInput(
                f"{field}: {host} is {ip}, an internal address (loopback, private, "
                "link-local, reserved or metadata); a platform administrator may set "
                "allow_internal to permit it"
            )
    return found


def forbidden(ip: IP) -> bool:
    """True for every address that is not plainly public, and for metadata services."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return forbidden(ip.ipv4_mapped)
        if ip in _NAT64:  # DNS64 maps public IPv4 hosts here: judge the IPv4 inside
            return forbidden(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and forbidden(ip.sixtofour):
            return True
        if ip.is_site_local:
            return True
    return (
        ip in _METADATA_IPS
        or not ip.is_global  # loopback, RFC 1918, ULA, CGNAT, link-local, unspecified...
        or ip.is_multicast
        or ip.is_reserved
    )


def forbidden_ip(text: str) -> bool:
    """For the connect-time check (providers/http.py CheckedResolver); unparsable is
    forbidden."""
    try:
        return forbidden(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return True


def _addresses(host: str, resolve: bool) -> list[IP]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return []  # unresolvable now: every connection re-checks (CheckedResolver)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _literal(host: str) -> IP | None:
    """The address a host names without DNS: an IP literal in any spelling the system
    resolver would accept (and connect to)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    if _LOOSE_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
