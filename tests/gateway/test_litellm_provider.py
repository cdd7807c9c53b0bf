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
