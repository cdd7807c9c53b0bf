"""A local model served on Ray Serve (`engine: ray` on a llama_cpp provider): a real
local Ray instance, a Serve application of two replicas (each running the model on
llama-server), called through its handle by the gateway; deleted with its provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shipyard.gateway.core.tokenizer import smollm2_path
from tests.gateway.conftest import Env, make_env

pytestmark = [pytest.mark.local_model, pytest.mark.ray]
ASK = [{"role": "user", "content": "Count to five."}]


@pytest.fixture
def env(tmp_path: Path, ray_address: str) -> Iterator[Env]:
    yield from make_env(tmp_path, local_threads=1, ray_address=ray_address)


def test_a_model_on_ray_serve_replicas(env: Env) -> None:
    from ray import serve

    r = env.admin.post("/api/gateway/providers", json={
        "name": "on-ray", "kind": "llama_cpp",
        "options": {"model_path": str(smollm2_path()), "engine": "ray", "replicas": 2,
                    "n_threads": 0.5, "slots": 2},
    })  # fmt: skip
    assert r.status_code == 201, r.text
    provider_id = r.json()["id"]
    r = env.admin.put("/api/gateway/routes/smol-ray", json={
        "name": "smol-ray", "deployments": [{"provider": "on-ray", "model": "smol"}]})  # fmt: skip
    assert r.status_code == 200, r.text

    def call(i: int) -> httpx.Response:
        return env.admin.post("/v1/chat/completions", json={
            "model": "smol-ray", "max_tokens": 16, "temperature": 0, "messages": ASK,
            "stream": i % 2 == 1})  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(call, range(4)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert replies[0].json()["choices"][0]["message"]["content"]
    assert replies[0].json()["model"] == "smol"
    assert "[DONE]" in replies[1].text and '"content"' in replies[1].text

    app = serve.status().applications[f"shipyard-{provider_id}"]
    assert str(app.status).endswith("RUNNING")
    assert app.deployments["llama"].replica_states == {"RUNNING": 2}
    records = env.records(route="smol-ray")
    assert len(records) == 4 and {r["provider"] for r in records} == {"on-ray"}

    # the route gone, its provider is closed (a minute later, for calls in flight):
    # the application goes with it
    r = env.admin.delete("/api/gateway/routes/smol-ray")
    assert r.status_code in (200, 204), r.text
    gateway = env.app.state.platform.services["gateway"]
    for _ in range(100):  # the gateway reloads its configuration when it changes
        retired = [p for p in gateway.pool._retired if getattr(p, "_servers", None)]
        if retired:
            break
        time.sleep(0.1)
    [provider] = retired
    asyncio.run(provider.close())  # what the pool does a minute later
    assert f"shipyard-{provider_id}" not in serve.status().applications
