"""The built-in local models, offline: SmolLM2 (GGUF via llama.cpp) and all-MiniLM-L6-v2
(sentence-transformers), called with the openai and anthropic SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from openai import OpenAI

from tests.gateway.conftest import Env, make_env

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # one llama.cpp thread: the test suite must not oversubscribe the machine
    yield from make_env(tmp_path_factory.mktemp("local"), local_threads=1)


@pytest.fixture(scope="module")
def client(local: Env) -> OpenAI:
    key, _ = local.key("local-app")
    return OpenAI(base_url=local.url + "/v1", api_key=key, max_retries=0)


def test_the_default_model_needs_no_configuration(client: OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert {"smollm2", "all-minilm-l6-v2"} <= names


def test_chat_with_smollm2(client: OpenAI, local: Env) -> None:
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello in one word."}],
        max_tokens=16,
        temperature=0,
        seed=1,
    )
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 16
    rec = local.records(route="smollm2")[0]
    assert rec["provider"] == "local-llama" and rec["cost_usd"] == 0


def test_streaming_with_smollm2(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage.completion_tokens > 0


def test_json_mode_with_smollm2(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        max_tokens=32,
        temperature=0,
    )
    # grammar-constrained by the schema: always valid JSON of that shape
    assert isinstance(json.loads(reply.choices[0].message.content)["ok"], bool)


def test_local_embeddings(client: OpenAI) -> None:
    out = client.embeddings.create(
        model="all-minilm-l6-v2", input=["a cat sits on the mat", "a kitten on a rug", "tax law"]
    )
    vecs = [d.embedding for d in out.data]
    assert len(vecs[0]) == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])
    floats = client.embeddings.create(model="all-minilm-l6-v2", input="x", encoding_format="float")
    assert len(floats.data[0].embedding) == 384


def test_anthropic_sdk_reaches_the_local_model(local: Env) -> None:
    key, _ = local.key("claude-style")
    claude = anthropic.Anthropic(base_url=local.url, api_key=key, max_retries=0)
    msg = claude.messages.create(
        model="smollm2", max_tokens=16, messages=[{"role": "user", "content": "Hi!"}]
    )
    assert msg.content[0].type == "text" and msg.usage.output_tokens > 0
    with claude.messages.stream(
        model="smollm2", max_tokens=16, messages=[{"role": "user", "content": "Hi!"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text.strip()


def test_heavy_libraries_are_not_imported_until_used(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = """
import sys
from starlette.testclient import TestClient
from shipyard.app import create_app
from shipyard.settings import load_settings
app = create_app(load_settings(home=sys.argv[1]))
with TestClient(app, base_url="http://localhost") as c:
    c.get("/readyz")
print(",".join(m for m in ("torch", "llama_cpp", "sentence_transformers") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_semantic_cache_with_local_embeddings(local: Env) -> None:
    local.provider("fake-sem")
    r = local.admin.put(
        "/api/gateway/routes/sem",
        json={
            "name": "sem",
            "cache_ttl": 60,
            "semantic_threshold": 0.9,
            "deployments": [{"provider": "fake-sem", "model": "gpt-4o-mini"}],
        },
    )
    assert r.status_code == 200, r.text
    key, _ = local.key("sem-app")
    client = OpenAI(base_url=local.url + "/v1", api_key=key, max_retries=0)
    ask = lambda q: client.chat.completions.with_raw_response.create(  # noqa: E731
        model="sem", messages=[{"role": "user", "content": q}]
    )
    first = ask("What is the capital of France?")
    assert first.headers["x-shipyard-cache"] == "miss"
    near = ask("what's the capital of france")
    assert near.headers["x-shipyard-cache"] == "semantic-hit"
    assert near.parse().choices[0].message.content == first.parse().choices[0].message.content
    far = ask("How do I bake sourdough bread?")
    assert far.headers["x-shipyard-cache"] == "miss"
    hits = [rec for rec in local.records(route="sem") if rec["cache_hit"]]
    assert len(hits) == 1 and hits[0]["provider"] == "semantic-cache"


def test_smollm2_in_a_worker_process(local: Env) -> None:
    from shipyard.gateway.core.tokenizer import smollm2_path

    r = local.admin.post(
        "/api/gateway/providers",
        json={
            "name": "llama-worker",
            "kind": "llama_cpp",
            "options": {"model_path": str(smollm2_path()), "worker": True, "n_threads": 1},
        },
    )
    assert r.status_code == 201, r.text
    local.route("smollm2-worker", {"provider": "llama-worker", "model": "SmolLM2-135M-Instruct"})
    key, _ = local.key("worker-app")
    client = OpenAI(base_url=local.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="smollm2-worker", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
    )
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="smollm2-worker",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.completion_tokens > 0


def test_a_stream_reports_the_models_own_usage_and_ends_well(client: OpenAI, local: Env) -> None:
    """Usage is the model's: a stream cut at max_tokens counts max_tokens (not the role
    and finish chunks too), and a stream the SDK read to the end is recorded as 200."""
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 40,
        "temperature": 0,
        "seed": 1,
    }
    whole = client.chat.completions.create(**body)  # type: ignore[call-overload]  # a dict of known keys
    chunks = list(
        client.chat.completions.create(  # type: ignore[call-overload]  # a dict of known keys
            **body, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert whole.choices[0].finish_reason == "length"
    assert usage.completion_tokens == whole.usage.completion_tokens == 40
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    streamed = next(r for r in local.records(route="smollm2") if r["stream"])
    assert streamed["status"] == 200 and streamed["error_class"] == ""
    assert streamed["completion_tokens"] == 40
