"""Limits and budgets under concurrency, on the in-process backend and on Redis shared
by two replicas."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from shipyard.app import create_app
from shipyard.settings import load_settings
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.support import live_server

MSG = [{"role": "user", "content": "hi"}]
PER_CALL = 5 * 1000 / 1e6  # 5 output tokens at $1000 per 1M


async def _burst(urls: list[str], key: str, n: int, body: dict[str, Any]) -> Counter[int]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(i: int) -> int:
            r = await http.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
            if r.status_code == 429:
                assert r.json()["error"]["code"] in ("insufficient_quota", "rate_limit_exceeded")
            return r.status_code

        return Counter(await asyncio.gather(*(one(i) for i in range(n))))


def _setup(env: Env) -> None:
    env.provider()
    env.route("pricey", {"provider": "fake", "model": "pricey-model"})
    assert (
        env.admin.put(
            "/api/gateway/prices/pricey-model", json={"input": 0, "output": 1000}
        ).status_code
        == 200
    )


def _converged(urls: list[str], key: str, scope_check: str = "pricey") -> None:
    """Replicas reload configuration by polling its version; wait until all have."""
    import time

    deadline = time.monotonic() + 15
    for url in urls:
        while True:
            r = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
            if r.status_code == 200 and scope_check in {m["id"] for m in r.json()["data"]}:
                break
            assert time.monotonic() < deadline, f"{url} never saw the new configuration"
            time.sleep(0.1)


@pytest.fixture(params=["in-process", pytest.param("redis", marks=pytest.mark.redis)])
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Env, list[str]]]:
    """One replica (in-process backend) or two replicas sharing Redis and the database."""
    if request.param == "in-process":
        for env in make_env(tmp_path):
            yield env, [env.url]
        return
    redis_url = request.getfixturevalue("redis_url")
    for env in make_env(tmp_path, redis_url=redis_url):
        settings = load_settings(
            home=tmp_path / "home", admin_password=ADMIN_PASSWORD, redis_url=redis_url
        )
        with ExitStack() as stack:
            second_app = create_app(settings)
            second = stack.enter_context(live_server(second_app))
            _apps[:] = [env.app, second_app]
            yield env, [env.url, second]
            _apps.clear()


def _wait_limits(env: Env, url: str) -> None:
    import time

    want = env.app.state.platform.gateway.snapshot.version
    other = next(app for app in _apps if app is not env.app) if len(_apps) > 1 else None
    deadline = time.monotonic() + 15
    while other is not None and other.state.platform.gateway.snapshot.version < want:
        assert time.monotonic() < deadline, f"{url} never reloaded"
        time.sleep(0.1)


_apps: list[Any] = []


def test_budget_race_never_overspends(replicas: tuple[Env, list[str]]) -> None:
    env, urls = replicas
    _setup(env)
    key, key_id = env.key("budgeted", budget_usd=20 * PER_CALL + 1e-9, budget_period="day")
    body = {"model": "pricey", "messages": MSG, "max_tokens": 5}
    _converged(urls, key)
    for url in urls[1:]:  # the limits arrive with the same reload; give it one more poll
        _wait_limits(env, url)
    results = asyncio.run(_burst(urls, key, 200, body))
    assert results[200] == 20 and results[429] == 180, results
    for app in _apps:  # each replica writes its own records (the ledger)
        app.state.platform.gateway.records.flush()
    limits = env.admin.get("/api/gateway/limits").json()
    mine = next(lim for lim in limits if lim["scope"] == f"key:{key_id}")
    assert mine["spent_usd"] == pytest.approx(20 * PER_CALL)
    records = env.records(key_id=key_id, limit=1000)
    assert sum(r["cost_usd"] for r in records) == pytest.approx(20 * PER_CALL)
    assert Counter(r["status"] for r in records) == {200: 20, 429: 180}


def test_rate_limit_race(replicas: tuple[Env, list[str]]) -> None:
    env, urls = replicas
    _setup(env)
    key, _ = env.key("limited", rpm=20)
    _converged(urls, key)
    for url in urls[1:]:
        _wait_limits(env, url)
    results = asyncio.run(_burst(urls, key, 200, {"model": "pricey", "messages": MSG}))
    assert results[200] == 20 and results[429] == 180, results


def test_limits_per_request(env: Env) -> None:
    _setup(env)
    env.route("other")
    key, key_id = env.key("narrow", max_tokens=50, allowed_routes=["pricey"])
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="pricey", messages=MSG, max_tokens=51)
    assert too_many.value.code == "max_tokens_exceeded"
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other", messages=MSG)
    assert [m.id for m in client.models.list()] == ["pricey"]
    client.chat.completions.create(model="pricey", messages=MSG)
    assert env.upstream.requests[-1]["max_tokens"] == 50  # capped for the upstream


def test_workspace_and_end_user_budgets(env: Env) -> None:
    _setup(env)
    key, _ = env.key("team")
    assert (
        env.admin.put(
            "/api/gateway/limits/user/bob", json={"budget_usd": PER_CALL * 2 + 1e-9}
        ).status_code
        == 200
    )
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="pricey", messages=MSG, max_tokens=5, user="bob")
    with pytest.raises(openai.RateLimitError) as spent:
        client.chat.completions.create(model="pricey", messages=MSG, max_tokens=5, user="bob")
    assert spent.value.code == "insufficient_quota"
    client.chat.completions.create(model="pricey", messages=MSG, max_tokens=5, user="carol")
    assert env.admin.put("/api/gateway/limits/workspace/-", json={"rpm": 1}).status_code == 200
    with pytest.raises(openai.RateLimitError) as rate:
        for _ in range(2):
            client.chat.completions.create(model="pricey", messages=MSG, max_tokens=5, user="dan")
    assert rate.value.response.headers["retry-after"]


def test_an_abandoned_stream_is_still_charged(env: Env) -> None:
    _setup(env)
    key, key_id = env.key("streamer", budget_usd=10.0)
    env.upstream.then("drip", content=" ".join(["word"] * 40), delay=0.05)
    with httpx.stream(
        "POST",
        env.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "pricey", "messages": MSG, "stream": True},
    ) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break  # walk away mid-stream
    import time

    deadline = time.monotonic() + 10
    while True:
        records = env.records(key_id=key_id)
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    rec = records[0]
    assert rec["status"] == 499 and rec["completion_tokens"] > 0 and rec["cost_usd"] > 0
    limits = {lim["scope"]: lim for lim in env.admin.get("/api/gateway/limits").json()}
    assert limits[f"key:{key_id}"]["spent_usd"] == pytest.approx(rec["cost_usd"])
    route = next(r for r in env.admin.get("/api/gateway/routes").json() if r["name"] == "pricey")
    assert route["deployments"][0]["health"]["in_flight"] == 0  # the slot was given back
