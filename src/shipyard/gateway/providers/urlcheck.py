"""Provider base URLs are admin configuration, checked against link-local and cloud
metadata addresses (SSRF) unless the provider explicitly allows internal addresses."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from shipyard.errors import InvalidInput

_METADATA_HOSTS = {
    "metadata.google.internal",
    "metadata",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
}
_METADATA_IPS = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("168.63.129.16"),
}


def check_base_url(url: str, *, allow_internal: bool = False, resolve: bool = True) -> str:
    """Return the normalised URL or raise InvalidInput saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("base_url: must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidInput("base_url: has no host")
    if parts.username or parts.password:
        raise InvalidInput("base_url: must not carry credentials; use api_key")
    if parts.query or parts.fragment:
        raise InvalidInput("base_url: must not have a query or fragment")
    if allow_internal:
        return url.strip().rstrip("/")
    host = parts.hostname.lower().rstrip(".")
    if host in _METADATA_HOSTS:
        raise InvalidInput(f"base_url: {host} is a cloud metadata address")
    for ip in _addresses(host, resolve):
        if _forbidden(ip):
            raise InvalidInput(
                f"base_url: {host} resolves to {ip}, a link-local or metadata address "
                "(set allow_internal to permit it)"
            )
    return url.strip().rstrip("/")


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip in _METADATA_IPS or ip.is_link_local or ip.is_multicast or ip.is_unspecified


def forbidden_ip(text: str) -> bool:
    """For the connect-time check (providers/http.py CheckedResolver)."""
    try:
        return _forbidden(_unmap(ipaddress.ip_address(text.split("%", 1)[0])))
    except ValueError:
        return True


def _addresses(host: str, resolve: bool) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        ip = ipaddress.ip_address(host)
        return [_unmap(ip)]
    except ValueError:
        pass
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return []  # unresolvable now: every connection re-checks (CheckedResolver)
    return [_unmap(ipaddress.ip_address(info[4][0])) for info in infos]


def _unmap(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
