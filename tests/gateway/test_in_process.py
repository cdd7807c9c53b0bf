"""The typed in-process call (`Gateway.chat`, `Gateway.chat_stream`): what evaluation,
judges and pipelines use. Same checks, governance and records as `/v1`, no HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shipyard.errors import InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from shipyard.gateway.core.call import ChatRequest
from shipyard.gateway.core.service import Gateway
from shipyard.identity.actor import Actor
from shipyard.platform import Platform
from tests.gateway.conftest import Env

MSG = [{"role": "user", "content": "hi there"}]


@pytest.fixture
async def platform(env: Env) -> AsyncIterator[Platform]:
    """A second instance on the same data dir, running on this test's event loop."""
    env.provider()
    env.route("mini", {"provider": "fake", "model": "gpt-4o-mini"})
    instance = Platform(env.app.state.platform.settings)
    instance.start()
    await instance.start_services()
    yield instance
    await instance.stop_services()
    instance.stop()


def _actor(platform: Platform, key: str) -> Actor:
    return platform.keys.authenticate(key)


async def test_chat_answers_and_is_recorded(env: Env, platform: Platform) -> None:
    key, key_id = env.key("evaluator")
    gateway: Gateway = platform.gateway
    result = await gateway.chat(
        ChatRequest(model="mini", messages=MSG, params={"temperature": 0}),
        actor=_actor(platform, key),
    )
    assert result.content == "echo: hi there"
    assert result.usage["total_tokens"] == 15 and result.route == "mini"
    assert result.cost_usd == pytest.approx((10 * 0.15 + 5 * 0.60) / 1e6)
    assert env.upstream.requests[-1]["temperature"] == 0
    gateway.records.flush()
    records = env.records(key_id=key_id)
    assert [(r["id"], r["api"], r["status"]) for r in records] == [(result.request_id, "chat", 200)]


async def test_stream_yields_chunks_and_settles_once(env: Env, platform: Platform) -> None:
    key, key_id = env.key("judge")
    chunks = [
        c
        async for c in platform.gateway.chat_stream(
            ChatRequest(model="mini", messages=MSG), actor=_actor(platform, key)
        )
    ]
    text = "".join(
        (c["choices"][0].get("delta") or {}).get("content") or "" for c in chunks if c["choices"]
    )
    assert text == "echo: hi there" and chunks[-1]["usage"]["completion_tokens"] > 0
    platform.gateway.records.flush()
    (record,) = env.records(key_id=key_id)
    assert record["stream"] is True and record["status"] == 200


async def test_limits_and_checks_apply(env: Env, platform: Platform) -> None:
    # a budget worth one call (5 output tokens at $1000 per 1M): the second is refused
    env.route("pricey", {"provider": "fake", "model": "pricey-model"})
    price = {"input": 0, "output": 1000}
    assert env.admin.put("/api/gateway/prices/pricey-model", json=price).status_code == 200
    key, key_id = env.key("capped", budget_usd=0.005, budget_period="total")
    await platform.gateway.reload()
    actor = _actor(platform, key)
    pricey = ChatRequest(model="pricey", messages=MSG, params={"max_tokens": 5})
    first = await platform.gateway.chat(pricey, actor=actor)
    assert first.cost_usd == pytest.approx(0.005)
    with pytest.raises(QuotaExceeded):
        await platform.gateway.chat(pricey, actor=actor)
    with pytest.raises(NotFound):
        await platform.gateway.chat(ChatRequest(model="nope", messages=MSG), actor=actor)
    with pytest.raises(InvalidInput):
        await platform.gateway.chat(
            ChatRequest(model="mini", messages=MSG, params={"api_base": "http://evil"}),
            actor=actor,
        )
    platform.gateway.records.flush()
    statuses = sorted(r["status"] for r in env.records(key_id=key_id))
    assert statuses == [200, 429]  # refused by the budget: recorded; bad input never routed


async def test_the_callers_role_is_checked(env: Env, platform: Platform) -> None:
    viewer, _ = env.key("reader", role="viewer")
    with pytest.raises(PermissionDenied):
        await platform.gateway.chat(
            ChatRequest(model="mini", messages=MSG), actor=_actor(platform, viewer)
        )
