"""Replicas of a local model (`local_replicas`): each request goes to the replica with
the fewest in flight, so concurrent calls generate in separate worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Env, make_env

pytestmark = pytest.mark.local_model


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path, local_threads=1, local_replicas=2)


def test_concurrent_calls_spread_over_the_replicas(env: Env) -> None:
    def call(i: int) -> httpx.Response:
        return env.admin.post("/v1/chat/completions", json={
            "model": "smollm2", "max_tokens": 24, "temperature": 0,
            "messages": [{"role": "user", "content": f"Count to {i + 5}."}]})  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(call, range(4)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert all(r.json()["choices"][0]["message"]["content"] for r in replies)
    gateway = env.app.state.platform.services["gateway"]
    route = gateway.snapshot.route(None, "smollm2")
    provider = gateway.pool.get(route.deployments[0].provider)
    replicas = provider._worker
    assert len(replicas.workers) == 2
    started = [w for w in replicas.workers if w._proc is not None and w._proc.is_alive()]
    assert len(started) == 2  # both took requests
    assert replicas.in_flight() == 0
