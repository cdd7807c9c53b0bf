"""Secrets stay secret; clients cannot steer connections; every /v1 route is guarded."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from shipyard.gateway.api.v1 import ROUTES
from shipyard.identity.roles import Role
from tests.gateway.conftest import Env

CANARY = "sk-CANARY-9f8e7d6c5b4a39281706"


def test_every_gateway_route_needs_a_key_and_the_right_role(env: Env) -> None:
    viewer, _ = env.key("reader", role="viewer")
    grants = env.app.state.platform.grants
    for method, path, permission in ROUTES:
        assert permission in grants
        concrete = path.replace("{model}", "x")
        body = {} if method == "POST" else None
        r = httpx.request(method, env.url + concrete, json=body)
        assert r.status_code == 401, (method, path, r.status_code)
        assert "error" in r.json()
        if Role.viewer not in grants[permission]:
            r = httpx.request(
                method, env.url + concrete, json=body, headers={"Authorization": f"Bearer {viewer}"}
            )
            assert r.status_code == 403, (method, path, r.status_code)


def test_no_secret_reaches_any_sink(
    env: Env, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    created = env.provider("canary", api_key=CANARY, headers={"X-Extra": CANARY + "-h"})
    assert CANARY not in str(created) and created["has_api_key"] is True
    env.route("c", {"provider": "canary", "model": "gpt-4o-mini"}, retries=0)
    key, key_id = env.key("canary-app")
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="c", messages=[{"role": "user", "content": "hi"}])
    env.upstream.fail(401, message=f"invalid key {CANARY}")  # an upstream echoing the key
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="c", messages=[{"role": "user", "content": "hi"}])
    wrong = OpenAI(base_url=env.url + "/v1", api_key=key + "x", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.models.list()
    assert env.upstream.headers[0]["Authorization"] == f"Bearer {CANARY}"  # it was used...

    secret_part = key.split("-", 2)[2]
    sinks = {
        "error body": str(info.value.body) + str(denied.value.body),
        "providers API": env.admin.get("/api/gateway/providers").text,
        "routes API": env.admin.get("/api/gateway/routes").text,
        "records": str(env.records(limit=1000)),
        "audit": env.admin.get("/api/audit/export").text,
        "logs": caplog.text + "".join(capfd.readouterr()),
        "metrics": env.admin.get("/metrics").text,
    }
    for name, text in sinks.items():
        assert CANARY not in text, f"provider key leaked into {name}"
        assert secret_part not in text, f"Shipyard key leaked into {name}"
    home = Path(env.app.state.platform.settings.home)
    for db_file in home.glob("shipyard.db*"):
        assert CANARY.encode() not in db_file.read_bytes(), "provider key stored in clear"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://169.254.169.254/v1", False),
        ("http://metadata.google.internal/v1", False),
        ("http://[fe80::1]/v1", False),
        ("http://[::ffff:169.254.169.254]/v1", False),
        ("ftp://example.com", False),
        ("http://user:pw@example.com/v1", False),
        ("http://127.0.0.1:8080/v1", False),  # more forms: test_outbound.py
        ("http://10.1.2.3/v1", False),
        ("http://8.8.8.8/v1", True),
    ],
)
def test_provider_urls_are_checked(env: Env, url: str, allowed: bool) -> None:
    r = env.admin.post(
        "/api/gateway/providers", json={"name": "p", "kind": "openai", "base_url": url}
    )
    assert (r.status_code == 201) is allowed, r.text
    if not allowed:
        assert r.status_code == 400 and "base_url" in r.json()["detail"]


def test_internal_addresses_need_an_explicit_allowance(env: Env) -> None:
    r = env.admin.post(
        "/api/gateway/providers",
        json={
            "name": "meta",
            "kind": "openai",
            "base_url": "http://169.254.169.254/v1",
            "allow_internal": True,
        },
    )
    assert r.status_code == 201


def test_provider_admin_needs_an_admin(env: Env) -> None:
    dev, _ = env.key("dev", role="developer")
    r = httpx.post(
        env.url + "/api/gateway/providers",
        headers={"Authorization": f"Bearer {dev}"},
        json={"name": "p", "kind": "openai", "base_url": "http://127.0.0.1:1/v1"},
    )
    assert r.status_code == 403
    assert (
        httpx.get(
            env.url + "/api/gateway/routes", headers={"Authorization": f"Bearer {dev}"}
        ).status_code
        == 200
    )


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_only_platform_admins_configure_instance_wide_settings(env: Env, role: str) -> None:
    """Internal addresses, files on the server's disk, the litellm library and the
    price table reach beyond a workspace: its owner (not a platform admin) may not."""
    ws_key, _ = env.key(f"ws-{role}", role=role)
    h = {"Authorization": f"Bearer {ws_key}"}
    answers = set()
    for body in (
        {
            "name": "a",
            "kind": "openai",
            "base_url": "http://169.254.169.254/v1",
            "allow_internal": True,
        },
        {"name": "b", "kind": "llama_cpp", "options": {"model_path": "/etc/passwd"}},
        {"name": "b", "kind": "llama_cpp", "options": {"model_path": "/no/such/file.gguf"}},
        {"name": "b", "kind": "sentence_transformers", "options": {"model_path": "/etc"}},
        {"name": "d", "kind": "litellm", "base_url": "https://api.example.com", "api_key": "k"},
    ):
        r = httpx.post(env.url + "/api/gateway/providers", headers=h, json=body)
        assert r.status_code == 403, r.text
        assert "platform administrator" in r.json()["detail"]
        if body["kind"] == "llama_cpp":
            answers.add(r.text)
    assert len(answers) == 1  # the same answer whether the file exists or not
    r = httpx.post(
        env.url + "/api/gateway/providers",
        headers=h,
        json={
            "name": "c",
            "kind": "openai",
            "base_url": "https://api.example.com",
            "options": {"paths": {"chat": "@169.254.169.254/latest"}},
        },
    )
    assert r.status_code == 400 and "options.paths.chat" in r.json()["detail"]
    r = httpx.put(env.url + "/api/gateway/prices/gpt-4o", headers=h, json={"input": 0, "output": 0})
    assert r.status_code == 403  # prices are shared by every workspace
    assert "gateway:prices" in r.json()["detail"]
    r = env.admin.put("/api/gateway/prices/gpt-4o", json={"input": 1, "output": 2})
    assert r.status_code == 200  # the bootstrap key is a platform administrator


def test_malformed_structures_are_400_not_500(env: Env) -> None:
    env.provider()
    env.route("m")
    key, _ = env.key()
    h = {"Authorization": f"Bearer {key}"}
    bodies = [
        {"model": "m", "messages": [{"role": "user", "content": ["hi"]}]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {}},
        {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": ["x"]}]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "model_list": []},
    ]
    for body in bodies:
        r = httpx.post(env.url + "/v1/chat/completions", headers=h, json=body)
        assert r.status_code == 400, (body, r.text)
    for body in (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "metadata": "x",
        },
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "any",
        },
    ):
        r = httpx.post(env.url + "/v1/messages", headers={"x-api-key": key}, json=body)
        assert r.status_code == 400 and r.json()["type"] == "error", r.text


def test_bad_gateway_input(env: Env) -> None:
    key, _ = env.key()
    h = {"Authorization": f"Bearer {key}"}
    cases = [
        (b"{nope", "application/json", 400),
        (b'{"model": "x"}', "text/plain", 415),
        (b"[]", "application/json", 400),
        (b'{"model": 5, "messages": []}', "application/json", 400),
    ]
    for body, ctype, status in cases:
        r = httpx.post(
            env.url + "/v1/chat/completions", content=body, headers={**h, "Content-Type": ctype}
        )
        assert r.status_code == status and r.json()["error"]["type"] == "invalid_request_error"
    big = b'{"model": "x", "messages": [{"role": "user", "content": "' + b"a" * 5_000_000 + b'"}]}'
    r = httpx.post(
        env.url + "/v1/chat/completions",
        content=big,
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    r = httpx.get(env.url + "/v1/nothing", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.get(env.url + "/v1/models", headers={**h, "Host": "evil.example"})
    assert r.status_code == 400
