"""Budgets that hold: the spend ledger (the request records) survives restarts and a
Redis flush, reservations cover the worst case of everything a request can trigger,
unpriced models are refused on budgeted routes, and tpm is reserved atomically."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.gateway.config.prices import SEED_PRICES, price_for
from tests.gateway.conftest import Env, make_env
from tests.gateway.fake_upstream import FakeUpstream

MSG = [{"role": "user", "content": "hi"}]
PER_CALL = 5 * 1000 / 1e6  # the fake upstream's 5 output tokens at $1000 per 1M


def serving(home: Path, upstream: FakeUpstream, **overrides: Any) -> AbstractContextManager[Env]:
    """The real app on loopback over `home`; called twice on one home, it is a restart."""
    assert home.name == "home"
    return contextmanager(make_env)(home.parent, upstream, **overrides)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


def _priced(
    env: Env, route: str = "pricey", model: str = "pricey-model", out: float = 1000
) -> None:
    r = env.admin.put(f"/api/gateway/prices/{model}", json={"input": 0, "output": out})
    assert r.status_code == 200, r.text
    env.route(route, {"provider": "fake", "model": model})


def _chat(env: Env, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "pricey", "messages": MSG, "max_tokens": 5, **body}
    return httpx.post(
        env.url + "/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _spent(env: Env, key_id: str) -> float:
    limits = env.admin.get("/api/gateway/limits").json()
    return float(next(x for x in limits if x["scope"] == f"key:{key_id}")["spent_usd"])


@pytest.mark.parametrize("period", ["total", "month", "day"])
def test_a_budget_still_binds_after_a_restart(
    tmp_path: Path, upstream: FakeUpstream, period: str
) -> None:
    home = tmp_path / "home"
    with serving(home, upstream) as env:
        env.provider(allow_internal=True)
        _priced(env)
        key, key_id = env.key("capped", budget_usd=10 * PER_CALL + 1e-9, budget_period=period)
        codes = Counter(_chat(env, key).status_code for _ in range(11))
        assert codes == {200: 10, 429: 1}, codes
    with serving(home, upstream) as env:  # the same data dir: a restart
        r = _chat(env, key)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        assert _spent(env, key_id) == pytest.approx(10 * PER_CALL)
        assert len(upstream.requests) == 10


@pytest.mark.redis
def test_a_budget_survives_a_redis_flush(
    tmp_path: Path, upstream: FakeUpstream, redis_url: str
) -> None:
    import redis

    with serving(
        tmp_path / "home", upstream, redis_url=redis_url, gateway_ledger_seconds=0.2
    ) as env:
        env.provider(allow_internal=True)
        _priced(env)
        key, key_id = env.key("capped", budget_usd=4 * PER_CALL + 1e-9, budget_period="month")
        assert [_chat(env, key).status_code for _ in range(4)] == [200] * 4
        client = redis.Redis.from_url(redis_url)
        client.flushall()
        deadline = time.monotonic() + 20
        while not client.keys("shipyard:b:budget:*"):  # re-seeded from the ledger
            assert time.monotonic() < deadline, "the counters were never re-seeded"
            time.sleep(0.05)
        assert _chat(env, key).status_code == 429
        assert _spent(env, key_id) == pytest.approx(4 * PER_CALL)


def test_a_budget_added_later_counts_what_was_already_spent(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    with serving(tmp_path / "home", upstream) as env:
        env.provider(allow_internal=True)
        _priced(env)
        key, key_id = env.key("late")
        assert [_chat(env, key).status_code for _ in range(3)] == [200] * 3
        r = env.admin.put(
            f"/api/gateway/limits/key/{key_id}",
            json={"budget_usd": 3 * PER_CALL + 1e-9, "budget_period": "month"},
        )
        assert r.status_code == 200  # the change reloads, and the reload seeds
        assert _chat(env, key).status_code == 429
        assert _spent(env, key_id) == pytest.approx(3 * PER_CALL)


def test_dated_snapshots_cost_what_their_family_costs() -> None:
    assert price_for(SEED_PRICES, "gpt-4o-2024-08-06") == SEED_PRICES["gpt-4o"]
    assert price_for(SEED_PRICES, "openai/gpt-4o-mini-2024-07-18") == SEED_PRICES["gpt-4o-mini"]
    assert (
        price_for(SEED_PRICES, "claude-3-5-sonnet-20241022")
        == SEED_PRICES["claude-3-5-sonnet-latest"]
    )
    assert price_for(SEED_PRICES, "gemini-1.5-pro-002") == SEED_PRICES["gemini-1.5-pro"]
    assert price_for(SEED_PRICES, "some-private-model") is None
    assert price_for(SEED_PRICES, "gpt-5-2025-08-07") is None  # a family we do not know


def test_an_unpriced_model_is_refused_on_a_budgeted_route(env: Env) -> None:
    env.provider(allow_internal=True)
    env.route("mystery", {"provider": "fake", "model": "mystery-model-2025-01-01"})
    free_key, _ = env.key("unbudgeted")
    capped, _ = env.key("budgeted", budget_usd=1.0)
    assert _chat(env, free_key, model="mystery").status_code == 200
    r = _chat(env, capped, model="mystery")
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "model_price_unknown" and "mystery-model-2025-01-01" in err["message"]
    # a platform administrator marks it free: then the budget can be kept
    r = env.admin.put("/api/gateway/prices/mystery-model", json={"input": 0, "output": 0})
    assert r.status_code == 200
    assert _chat(env, capped, model="mystery").status_code == 200


def test_a_fallback_that_costs_more_is_reserved_for(env: Env) -> None:
    env.provider(allow_internal=True)
    _priced(env, "dear", "dear-model", out=10_000)  # ten times the primary
    _priced(env, "cheap", "cheap-model", out=1000)
    env.route("cheap", {"provider": "fake", "model": "cheap-model"}, fallbacks={"any": ["dear"]})
    key, _ = env.key("fallbacks", budget_usd=3 * PER_CALL)
    r = _chat(env, key, model="cheap")  # worst case: the fallback, 10 x PER_CALL
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    wide, _ = env.key("wide", budget_usd=11 * PER_CALL)
    assert _chat(env, wide, model="cheap").status_code == 200


def test_reservations_cover_n_prompt_lists_and_tools(env: Env) -> None:
    env.provider(allow_internal=True)
    _priced(env)
    key, _ = env.key("worst-case", budget_usd=3 * PER_CALL)
    assert _chat(env, key, n=4).status_code == 429  # 4 choices of 5 tokens each
    r = httpx.post(
        env.url + "/v1/completions",
        json={"model": "pricey", "prompt": ["a", "b", "c", "d"], "max_tokens": 5},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 429  # one completion per prompt
    too_many = httpx.post(
        env.url + "/v1/completions",
        json={"model": "pricey", "prompt": ["x"] * 10_000, "max_tokens": 1},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "prompt"
    # tools are prompt tokens too: priced input makes a huge tool list unaffordable
    r = env.admin.put("/api/gateway/prices/pricey-model", json={"input": 1000, "output": 1000})
    assert r.status_code == 200
    tools = [
        {"type": "function", "function": {"name": f"f{i}", "description": "d" * 300}}
        for i in range(30)
    ]
    dollar, _ = env.key("a-dollar", budget_usd=1.0)  # ~10k tool-prompt tokens: about $3.3
    assert _chat(env, dollar, tools=tools).status_code == 429
    assert _chat(env, dollar).status_code == 200


async def _burst(url: str, key: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as http:
        body = {"model": "pricey", "messages": MSG, "max_tokens": 5}
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        url + "/v1/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    for _ in range(n)
                )
            )
        )


def test_tpm_is_reserved_so_a_burst_cannot_overshoot_it(env: Env) -> None:
    env.provider(allow_internal=True)
    _priced(env)
    for _ in range(20):  # all in flight at once: check-then-add would admit them all
        env.upstream.then("slow", delay=0.3)
    key, _ = env.key("tpm", tpm=120)
    replies = asyncio.run(_burst(env.url, key, 20))
    ok = [r for r in replies if r.status_code == 200]
    assert ok and len(ok) < 20
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    assert used <= 120
    refused = [r for r in replies if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in refused)


def test_a_semantic_cache_embedding_is_budgeted_and_recorded(env: Env) -> None:
    env.provider(allow_internal=True)
    _priced(env)
    r = env.admin.put("/api/gateway/prices/embed-model", json={"input": 1000, "output": 0})
    assert r.status_code == 200
    env.route("embedder", {"provider": "fake", "model": "embed-model"}, kind="embedding")
    env.route(
        "pricey",
        {"provider": "fake", "model": "pricey-model"},
        cache_ttl=60,
        semantic_threshold=0.99,
        semantic_embedding_route="embedder",
    )
    key, key_id = env.key("semantic", budget_usd=1.0)
    assert _chat(env, key).status_code == 200
    records = env.records(key_id=key_id)
    assert sorted(r["api"] for r in records) == ["chat", "embeddings"]
    embed = next(r for r in records if r["api"] == "embeddings")
    assert embed["route"] == "embedder" and embed["cost_usd"] > 0
    assert _spent(env, key_id) == pytest.approx(sum(r["cost_usd"] for r in records))


def test_counting_a_prompt_of_odd_shapes_never_raises() -> None:
    """The stream clean-up counts the prompt when a provider reports no usage: parts
    whose `text` is not a string (or messages that are not objects) must not make it
    raise before settlement."""
    from shipyard.gateway.core.service import _count_prompt

    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": 5}, {"type": "text"}]},
            {"role": "user", "content": [{"type": "text", "text": "real words"}]},
            "not a message",
        ],
        "prompt": ["a", 3],
        "input": [None],
    }
    assert _count_prompt(body) > 0


def test_a_stream_without_usage_settles_and_is_recorded(env: Env) -> None:
    env.provider(allow_internal=True)
    _priced(env)
    env.upstream.then("no_usage")
    key, key_id = env.key("streamer", budget_usd=10 * PER_CALL)
    with httpx.stream(
        "POST",
        env.url + "/v1/chat/completions",
        json={"model": "pricey", "messages": MSG, "max_tokens": 5, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    ) as r:
        assert r.status_code == 200
        body = r.read()
    assert body.endswith(b"data: [DONE]\n\n")
    (rec,) = env.records(key_id=key_id)
    assert rec["status"] == 200 and rec["completion_tokens"] > 0
    assert _spent(env, key_id) == pytest.approx(rec["cost_usd"])
    # the reservation was reconciled: the rest of the budget is still there
    assert all(_chat(env, key).status_code == 200 for _ in range(8))
