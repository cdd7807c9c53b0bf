"""X-Forwarded-For is believed only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest

from shipyard.errors import ConfigError
from shipyard.http.proxies import ProxyHeaders
from shipyard.settings import load_settings

XFF = b"x-forwarded-for"


def client_of(proxies: ProxyHeaders, peer: str, *forwarded: bytes) -> str:
    scope = {"client": (peer, 1234), "headers": [(XFF, v) for v in forwarded]}
    proxies.apply(scope)
    return str(scope["client"][0])


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_of(ProxyHeaders([]), "10.0.0.2", b"203.0.113.9") == "10.0.0.2"


def test_an_untrusted_peer_cannot_name_itself() -> None:
    proxies = ProxyHeaders(["10.0.0.0/8"])
    assert client_of(proxies, "198.51.100.1", b"203.0.113.9") == "198.51.100.1"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ((b"203.0.113.9",), "203.0.113.9"),
        # the client wrote the left part itself: the rightmost untrusted hop wins
        ((b"192.0.2.1, 203.0.113.9",), "203.0.113.9"),
        ((b"192.0.2.1, 203.0.113.9, 10.1.2.3",), "203.0.113.9"),
        ((b"192.0.2.1", b"203.0.113.9"), "203.0.113.9"),  # two header lines
        ((b"not-an-ip, 10.1.2.3",), "10.1.2.3"),  # garbage: the nearest address known
        ((b"10.9.9.9, 10.1.2.3",), "10.9.9.9"),  # all trusted: the farthest proxy
        ((b"[2001:db8::5]:4711",), "2001:db8::5"),
        ((b"203.0.113.9:4711",), "203.0.113.9"),
    ],
)
def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(
    forwarded: tuple[bytes, ...], client: str
) -> None:
    proxies = ProxyHeaders(["10.0.0.0/8", "::1"])
    assert client_of(proxies, "10.0.0.2", *forwarded) == client
    assert client_of(proxies, "::1", *forwarded) == client


def test_the_setting_names_a_bad_entry() -> None:
    assert load_settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == [
        "10.0.0.0/8",
        "::1",
    ]
    with pytest.raises(ConfigError, match="trusted_proxies.*'nginx'"):
        load_settings(trusted_proxies=["10.0.0.1", "nginx"])
