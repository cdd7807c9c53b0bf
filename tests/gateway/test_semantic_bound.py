"""The semantic cache is bounded over all scopes: a caller varying `seed` (a new scope per
call) cannot grow it past its entries and bytes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from shipyard.gateway.core.semantic import SemanticCache
from tests.gateway.conftest import Env, make_env


def test_many_scopes_stay_within_the_global_bound() -> None:
    cache = SemanticCache(max_entries=500, max_bytes=2 * 1024 * 1024, max_per_scope=50)
    rng = random.Random(7)
    vector = [rng.random() for _ in range(384)]
    for seed in range(20_000):
        scope = ("ws", f"chat:seed={seed}")
        cache.store(scope, vector, b"x" * rng.randint(100, 4000), ttl=3600)
        assert len(cache) <= 500 and cache.size_bytes <= 2 * 1024 * 1024
    assert cache.scopes <= 500
    # least recently used goes first: a scope read recently survives newer writes
    recent = ("ws", "chat:seed=19999")
    for seed in range(20_000, 20_400):
        assert cache.lookup(recent, vector, 0.99) is not None
        cache.store(("ws", f"chat:seed={seed}"), vector, b"y" * 100, ttl=3600)
    assert cache.lookup(("ws", "chat:seed=19000"), vector, 0.99) is None
    # bytes bind too, and an entry bigger than the whole budget is not kept
    cache.store(("ws", "huge"), vector, b"z" * (3 * 1024 * 1024), ttl=3600)
    assert cache.lookup(("ws", "huge"), vector, 0.5) is None
    assert cache.size_bytes <= 2 * 1024 * 1024


def test_one_scope_keeps_at_most_its_share() -> None:
    cache = SemanticCache(max_entries=1000, max_bytes=10**9, max_per_scope=10)
    for n in range(100):
        cache.store(("ws", "one"), [1.0, float(n)], b"p", ttl=3600)
    assert len(cache) == 10 and cache.scopes == 1


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def test_varying_seed_through_the_gateway_is_bounded(env: Env) -> None:
    env.provider("fake")
    env.route("emb", {"provider": "fake", "model": "text-embedding-3-small"}, kind="embedding")
    env.route("sem", cache_ttl=600, semantic_threshold=0.9, semantic_embedding_route="emb")
    gateway = env.app.state.platform.gateway
    gateway.semantic = SemanticCache(max_entries=20, max_bytes=1024 * 1024)
    key, _ = env.key("sem-app")
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    for seed in range(60):
        client.chat.completions.create(
            model="sem", messages=[{"role": "user", "content": "hello"}], seed=seed
        )
        assert len(gateway.semantic) <= 20
    assert gateway.semantic.scopes <= 20 and gateway.semantic.size_bytes <= 1024 * 1024
    # the cache still answers: a near prompt with the latest seed is a semantic hit
    again = client.chat.completions.with_raw_response.create(
        model="sem", messages=[{"role": "user", "content": "hello!"}], seed=59
    )
    assert again.headers["x-shipyard-cache"] == "semantic-hit"
