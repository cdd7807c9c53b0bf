"""Where Shipyard connects (SSRF): no redirects, no internal addresses unless a platform
administrator allows them, a repointed provider loses its secrets, and no secret (whole
or cut in half) reaches a client or a repr."""

from __future__ import annotations

import asyncio
import random
import socket

import httpx
import pytest

from shipyard.errors import ErrorClass, UpstreamError, redact
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.providers.http import _RAW_TEXT, CheckedResolver
from shipyard.gateway.providers.openai_compat import OpenAICompatible
from shipyard.gateway.providers.urlcheck import check_base_url
from tests.gateway.conftest import Env
from tests.gateway.fake_upstream import FakeUpstream

# a key whose alphabet appears nowhere else in an error reply
KEY = "sk-" + "".join(random.Random(7).choice("QZJXKVW") for _ in range(48))
HEADER_SECRET = "hdr-" + "".join(random.Random(8).choice("QZJXKVW") for _ in range(40))


@pytest.fixture
def second() -> FakeUpstream:
    """Another loopback server: where a redirect would lead."""
    server = FakeUpstream().start()
    yield server
    server.stop()


def _call(env: Env, key: str, route: str, **extra: object) -> httpx.Response:
    return httpx.post(
        env.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": route, "messages": [{"role": "user", "content": "hi"}], **extra},
        timeout=30,
    )


# --- redirects ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_not_followed(
    env: Env, second: FakeUpstream, status: int, stream: bool
) -> None:
    """An upstream answering a redirect gets a clear error, and the target (here a
    second loopback server) is never called, so the `api-key` header stays put."""
    env.provider("gw", api_key=KEY, headers={"api-key": HEADER_SECRET})
    env.route("r", {"provider": "gw", "model": "gpt-4o-mini"}, retries=0)
    key, _ = env.key()
    target = second.url + "/chat/completions"
    env.upstream.then("redirect", status=status, location=target)
    r = _call(env, key, "r", stream=stream)
    assert r.status_code == 502, r.text
    assert "redirect" in r.json()["error"]["message"]
    assert env.upstream.headers[-1]["api-key"] == HEADER_SECRET  # the provider was called
    assert second.requests == [] and second.headers == []


def test_an_anthropic_redirect_to_the_metadata_service_is_not_followed(
    env: Env, second: FakeUpstream
) -> None:
    env.provider("claude", kind="anthropic", base=env.upstream.root, api_key=KEY)
    env.route("c", {"provider": "claude", "model": "claude-3-5-haiku-latest"}, retries=0)
    key, _ = env.key()
    for location in (
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        second.root + "/v1/messages",
    ):
        env.upstream.then("redirect", status=302, location=location)
        r = _call(env, key, "c")
        assert r.status_code == 502 and "redirect" in r.json()["error"]["message"], r.text
    assert second.headers == []  # x-api-key went nowhere else


def test_health_probes_follow_no_redirects(second: FakeUpstream) -> None:
    upstream = FakeUpstream().start()
    try:
        spec = ProviderSpec(
            id="p",
            name="p",
            kind="openai",
            workspace_id="w",
            base_url=upstream.url,
            api_key=KEY,
            options={"allow_internal": True},
        )
        dep = Deployment(id="d", route="r", provider=spec, model="m")
        upstream.then("redirect", status=301, location=second.url + "/chat/completions")

        async def probe() -> bool:
            provider = OpenAICompatible(spec)
            try:
                return await provider.healthy(dep)
            finally:
                await provider.close()

        assert asyncio.run(probe()) is False
        assert second.requests == []
    finally:
        upstream.stop()


# --- internal addresses -----------------------------------------------------------------


BLOCKED = [
    "http://127.0.0.1:8080/v1",
    "http://127.9.9.9/v1",
    "http://localhost:8080/v1",  # a name that resolves to loopback
    "http://LOCALHOST./v1",
    "http://[::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://[::ffff:7f00:1]/v1",
    "http://[::127.0.0.1]/v1",
    "http://10.1.2.3/v1",
    "http://172.16.0.1/v1",
    "http://192.168.1.1/v1",
    "http://[fd12:3456::1]/v1",  # ULA
    "http://[fec0::1]/v1",  # site-local
    "http://100.64.0.1/v1",  # CGNAT
    "http://0.0.0.0/v1",
    "http://[::]/v1",
    "http://224.0.0.1/v1",
    "http://[ff02::1]/v1",
    "http://240.0.0.1/v1",
    "http://255.255.255.255/v1",
    "http://198.18.0.1/v1",
    "http://169.254.169.254/v1",
    "http://[fe80::1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://[64:ff9b::a9fe:a9fe]/v1",  # NAT64 of the metadata address
    "http://[2002:a9fe:a9fe::1]/v1",  # 6to4 of it
    "http://[fd00:ec2::254]/v1",
    "http://168.63.129.16/v1",
    "http://100.100.100.200/v1",
    "http://metadata.google.internal/v1",
    "http://2130706433/v1",  # 127.0.0.1 in decimal
    "http://0x7f.1/v1",
    "http://0x7f000001/v1",
    "http://0177.0.0.1/v1",
    "http://017700000001/v1",
    "http://2852039166/v1",  # 169.254.169.254 in decimal
]


@pytest.mark.parametrize("url", BLOCKED)
def test_internal_addresses_are_refused(env: Env, url: str) -> None:
    r = env.admin.post(
        "/api/gateway/providers", json={"name": "p", "kind": "openai", "base_url": url}
    )
    assert r.status_code == 400, r.text
    assert "base_url" in r.json()["detail"]
    r = env.admin.post("/api/gateway/providers", json={"name": "p", "kind": "openai"})
    assert r.status_code == 400 and "base_url" in r.json()["detail"]


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/v1", "https://[2606:4700:4700::1111]/v1", "http://[64:ff9b::808:808]"]
)
def test_public_addresses_are_allowed(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


def test_a_platform_admin_allows_internal_addresses_per_provider(env: Env) -> None:
    """Local model servers (Ollama, vLLM on this host) are the legitimate case."""
    r = env.admin.post(
        "/api/gateway/providers",
        json={
            "name": "ollama",
            "kind": "openai",
            "base_url": "http://localhost:11434/v1",
            "allow_internal": True,
        },
    )
    assert r.status_code == 201 and r.json()["allow_internal"] is True
    # turning the allowance off re-checks the URL
    r = env.admin.patch("/api/gateway/providers/ollama", json={"allow_internal": False})
    assert r.status_code == 400 and "base_url" in r.json()["detail"]


def test_workspace_owners_cannot_allow_internal_addresses(env: Env) -> None:
    owner, _ = env.key("ws-owner", role="owner")  # an owner, not a platform admin
    h = {"Authorization": f"Bearer {owner}"}
    body = {"name": "x", "kind": "openai", "base_url": env.upstream.url, "allow_internal": True}
    r = httpx.post(env.url + "/api/gateway/providers", headers=h, json=body)
    assert r.status_code == 403 and "platform administrator" in r.json()["detail"]
    body["allow_internal"] = False
    r = httpx.post(env.url + "/api/gateway/providers", headers=h, json=body)
    assert r.status_code == 400 and "internal address" in r.json()["detail"]
    # a provider a platform admin allowed stays out of a workspace owner's reach
    env.provider("local")
    for change in ({"base_url": "http://127.0.0.1:1/v1"}, {"options": {"profile": "azure"}}):
        r = httpx.patch(env.url + "/api/gateway/providers/local", headers=h, json=change)
        assert r.status_code == 403, change
    # ...though its key may be rotated: where it connects does not change
    r = httpx.patch(env.url + "/api/gateway/providers/local", headers=h, json={"api_key": "k2"})
    assert r.status_code == 200 and r.json()["base_url"] == env.upstream.url


def test_the_connection_is_checked_too(env: Env) -> None:
    """A name that passed the configuration check and now resolves to an internal
    address (DNS rebinding) is refused when connecting: nothing reaches the server."""

    async def resolve() -> None:
        resolver = CheckedResolver()
        try:
            with pytest.raises(OSError, match="internal"):
                await resolver.resolve("localhost", 80, socket.AF_INET)
        finally:
            await resolver.close()

    asyncio.run(resolve())
    port = env.upstream.port
    # by name (the resolver refuses it), and by literal (a row stored before these checks)
    for host in ("localhost", "127.0.0.1", "[::ffff:127.0.0.1]"):
        spec = ProviderSpec(
            id="p", name="p", kind="openai", workspace_id="w", base_url=f"http://{host}:{port}/v1"
        )
        dep = Deployment(id="d", route="r", provider=spec, model="m")

        async def call(spec: ProviderSpec = spec, dep: Deployment = dep) -> None:
            provider = OpenAICompatible(spec)
            try:
                await provider.chat({"messages": [{"role": "user", "content": "x"}]}, dep)
            finally:
                await provider.close()

        with pytest.raises(UpstreamError) as info:
            asyncio.run(call())
        assert info.value.error_class is ErrorClass.connect, host
    assert env.upstream.requests == []


# --- a repointed provider loses its secrets -----------------------------------------------


def test_an_admin_cannot_repoint_an_owners_key_at_their_own_server(env: Env) -> None:
    r = env.admin.post(
        "/api/gateway/providers",
        json={
            "name": "corp",
            "kind": "openai",
            "base_url": "https://api.corp.example/v1",
            "api_key": KEY,
            "headers": {"X-Org": HEADER_SECRET},
        },
    )
    assert r.status_code == 201, r.text
    admin, _ = env.key("ws-admin", role="admin")
    h = {"Authorization": f"Bearer {admin}"}
    r = httpx.patch(
        env.url + "/api/gateway/providers/corp",
        headers=h,
        json={"base_url": "https://collector.attacker.example/v1"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["has_api_key"] is False and r.json()["header_names"] == []
    env.route("corp-r", {"provider": "corp", "model": "gpt-4o-mini"})
    specs = [
        d.provider
        for route in env.app.state.platform.gateway.snapshot.routes.values()
        for d in route.deployments
        if d.provider.name == "corp"
    ]
    assert specs and all(s.api_key is None and s.headers == () for s in specs)


def test_repointing_sends_the_old_secrets_nowhere(env: Env, second: FakeUpstream) -> None:
    env.provider("p", api_key=KEY, headers={"X-Org": HEADER_SECRET})
    env.route("r", {"provider": "p", "model": "gpt-4o-mini"}, retries=0)
    key, _ = env.key()
    assert _call(env, key, "r").status_code == 200
    assert env.upstream.headers[-1]["Authorization"] == f"Bearer {KEY}"
    r = env.admin.patch("/api/gateway/providers/p", json={"base_url": second.url})
    assert r.status_code == 200 and r.json()["has_api_key"] is False
    assert _call(env, key, "r").status_code == 200
    sent = second.headers[-1]
    assert "Authorization" not in sent and "X-Org" not in sent
    # new secrets in the same request are kept; the same URL again clears nothing
    r = env.admin.patch(
        "/api/gateway/providers/p",
        json={"base_url": env.upstream.url + "/", "api_key": "sk-new-key-1"},
    )
    assert r.json()["has_api_key"] is True and r.json()["header_names"] == []
    r = env.admin.patch(
        "/api/gateway/providers/p", json={"base_url": env.upstream.url, "headers": {"X-A": "b"}}
    )
    assert r.json()["has_api_key"] is True and r.json()["header_names"] == ["X-A"]
    # speaking another vendor's dialect to the same server is a repoint too
    r = env.admin.patch("/api/gateway/providers/p", json={"options": {"profile": "azure"}})
    assert r.json()["has_api_key"] is False and r.json()["header_names"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "metadata.google.internal"},
        {"Transfer-Encoding": "chunked"},
        {"Content-Length": "0"},
        {"X-Ok": "a\r\nHost: evil"},
        {"bad name": "x"},
        {f"X-{i}": "v" for i in range(51)},
    ],
)
def test_provider_headers_cannot_steer_the_connection(env: Env, headers: dict[str, str]) -> None:
    r = env.admin.post(
        "/api/gateway/providers",
        json={
            "name": "h",
            "kind": "openai",
            "base_url": "https://api.example.com",
            "headers": headers,
        },
    )
    assert r.status_code == 400 and "headers" in r.json()["detail"], r.text


# --- secrets in error text and reprs ------------------------------------------------------


@pytest.mark.parametrize("offset", [190, 200 - len(KEY) // 2, 470, _RAW_TEXT - 20, _RAW_TEXT - 5])
def test_a_key_cut_by_a_truncation_does_not_survive(env: Env, offset: int) -> None:
    """An upstream echoing the key in a long text error: wherever a cut falls (the raw
    body's, the final message's), no piece of the key reaches the client."""
    env.provider("echo", api_key=KEY, headers={"X-Org": HEADER_SECRET})
    env.route("e", {"provider": "echo", "model": "gpt-4o-mini"}, retries=0)
    key, _ = env.key()
    body = "." * offset + KEY + " " + HEADER_SECRET + "." * 600
    env.upstream.then("raw", status=500, message=body)
    r = _call(env, key, "e")
    assert r.status_code == 502
    text = r.text
    for secret in (KEY[3:], HEADER_SECRET[4:]):
        pieces = {secret[i : i + 5] for i in range(len(secret) - 4)}
        assert not [p for p in pieces if p in text], (offset, text[-200:])


def test_redact_removes_a_secret_cut_at_either_end() -> None:
    secret = "sk-abcdefghijklmnop"
    assert redact("error: sk-abcdefgh", [secret]) == "error: [redacted]"
    assert redact("ijklmnop was refused", [secret]) == "[redacted] was refused"
    assert redact(f"a {secret} b {secret}", [secret]) == "a [redacted] b [redacted]"
    assert redact("error: sk-", [secret]) == "error: sk-"  # 3 characters tell nothing


def test_no_secret_in_the_repr_of_the_snapshot(env: Env) -> None:
    env.provider("p", api_key=KEY, headers={"X-Org": HEADER_SECRET})
    env.route("r", {"provider": "p", "model": "gpt-4o-mini"})
    gateway = env.app.state.platform.gateway
    snap = gateway.snapshot
    route = next(r for r in snap.routes.values() if r.name == "r")
    dep = route.deployments[0]
    assert dep.provider.api_key == KEY and dep.provider.headers == (("X-Org", HEADER_SECRET),)
    live = gateway.pool.get(dep.provider)
    for thing in (snap, route, dep, dep.provider, live):
        for text in (repr(thing), str(thing)):
            assert KEY not in text and HEADER_SECRET not in text, type(thing)
