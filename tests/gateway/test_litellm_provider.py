"""The optional litellm-backed provider, against the scripted fake upstream."""

from __future__ import annotations

import os

import pytest
from openai import OpenAI

from tests.gateway.conftest import Env

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline
pytest.importorskip("litellm")


def test_litellm_provider(env: Env) -> None:
    env.provider("tail", kind="litellm")
    env.route("via-litellm", {"provider": "tail", "model": "openai/gpt-4o-mini"}, retries=0)
    key, _ = env.key()
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="via-litellm", messages=[{"role": "user", "content": "hello"}], max_tokens=9
    )
    assert reply.choices[0].message.content == "echo: hello"
    sent, headers = env.upstream.requests[-1], env.upstream.headers[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 9
    assert headers["Authorization"] == "Bearer sk-upstream-secret"
    chunks = list(
        client.chat.completions.create(
            model="via-litellm", messages=[{"role": "user", "content": "a b"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: a b"
    env.upstream.fail(500, times=1)
    with pytest.raises(Exception) as info:
        client.chat.completions.create(
            model="via-litellm", messages=[{"role": "user", "content": "x"}]
        )
    assert "sk-upstream-secret" not in str(info.value)


HOST_KEY = "sk-host-environment-key-0123456789"


def test_litellm_never_uses_the_hosts_credentials(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's own OPENAI_API_KEY (or cloud role) is not the provider's key: a
    litellm provider needs its own key and base URL, and every call passes them."""
    monkeypatch.setenv("OPENAI_API_KEY", HOST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", env.upstream.url)
    for missing in ("api_key", "base_url"):
        body = {
            "name": "tail",
            "kind": "litellm",
            "base_url": env.upstream.url,
            "api_key": "sk-provider-key",
            "allow_internal": True,
        }
        del body[missing]
        r = env.admin.post("/api/gateway/providers", json=body)
        assert r.status_code == 400 and missing in r.json()["detail"], r.text
    env.provider("tail", kind="litellm", api_key="sk-provider-key")
    r = env.admin.patch("/api/gateway/providers/tail", json={"api_key": ""})
    assert r.status_code == 400 and "api_key" in r.json()["detail"]
    env.route("t", {"provider": "tail", "model": "openai/gpt-4o-mini"}, retries=0)
    key, _ = env.key()
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="t", messages=[{"role": "user", "content": "x"}])
    assert env.upstream.headers[-1]["Authorization"] == "Bearer sk-provider-key"
    assert all(HOST_KEY not in str(h) for h in env.upstream.headers)


def test_litellm_refuses_to_call_without_its_own_key_or_base(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored provider lacking either (an older row) is refused before litellm runs:
    no fallback to the environment's key or to localhost."""
    import asyncio

    from shipyard.errors import UpstreamError
    from shipyard.gateway.config.specs import Deployment, ProviderSpec
    from shipyard.gateway.providers.litellm_provider import LiteLLMProvider

    monkeypatch.setenv("OPENAI_API_KEY", HOST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", env.upstream.url)
    for spec in (
        ProviderSpec(id="p", name="p", kind="litellm", workspace_id="w", base_url=env.upstream.url),
        ProviderSpec(id="p", name="p", kind="litellm", workspace_id="w", api_key="sk-own-key"),
    ):
        dep = Deployment(id="d", route="r", provider=spec, model="openai/gpt-4o-mini")
        with pytest.raises(UpstreamError, match="base_url and an api_key"):
            asyncio.run(LiteLLMProvider(spec).chat({"messages": []}, dep))
    assert env.upstream.requests == []


def test_litellm_serves_only_vendors_that_use_its_key(env: Env) -> None:
    """Vendors that would authenticate with the host's identity (Bedrock, Vertex...)
    are refused, by the route and by the call."""
    import asyncio

    from shipyard.errors import UpstreamError
    from shipyard.gateway.config.specs import Deployment, ProviderSpec
    from shipyard.gateway.providers.litellm_provider import LiteLLMProvider

    env.provider("tail", kind="litellm")
    for model in ("bedrock/anthropic.claude-3", "vertex_ai/gemini-pro", "gpt-4o", "vllm/x"):
        r = env.admin.put(
            "/api/gateway/routes/t",
            json={"name": "t", "deployments": [{"provider": "tail", "model": model}]},
        )
        assert r.status_code == 400 and "deployments.0.model" in r.json()["detail"], model
    own = ProviderSpec(
        id="p", name="p", kind="litellm", workspace_id="w", base_url=env.upstream.url, api_key="k1"
    )
    dep = Deployment(id="d", route="r", provider=own, model="bedrock/anthropic.claude-3")
    with pytest.raises(UpstreamError, match="not served"):
        asyncio.run(LiteLLMProvider(own).chat({"messages": []}, dep))
