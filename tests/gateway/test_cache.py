"""Exact-match response cache: scoped to the workspace, TTL, Cache-Control bypass."""

from __future__ import annotations

import time

from openai import OpenAI

from tests.gateway.conftest import Env

MSG = [{"role": "user", "content": "cache me"}]


def test_exact_match_cache(env: Env) -> None:
    env.provider()
    env.route("cached", cache_ttl=1.0)
    key, _ = env.key()
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)

    first = client.chat.completions.with_raw_response.create(model="cached", messages=MSG)
    second = client.chat.completions.with_raw_response.create(model="cached", messages=MSG)
    assert (
        first.headers["x-shipyard-cache"] == "miss" and second.headers["x-shipyard-cache"] == "hit"
    )
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert float(second.headers["x-shipyard-cost-usd"]) == 0
    assert len(env.upstream.requests) == 1

    other = client.chat.completions.with_raw_response.create(
        model="cached", messages=MSG, temperature=0.5
    )
    assert other.headers["x-shipyard-cache"] == "miss"  # a different request
    bypass = client.chat.completions.with_raw_response.create(
        model="cached", messages=MSG, extra_headers={"Cache-Control": "no-cache"}
    )
    assert bypass.headers["x-shipyard-cache"] == "bypass"
    assert len(env.upstream.requests) == 3

    time.sleep(1.1)  # TTL
    expired = client.chat.completions.with_raw_response.create(model="cached", messages=MSG)
    assert expired.headers["x-shipyard-cache"] == "miss"

    hits = [r for r in env.records(route="cached") if r["cache_hit"]]
    assert len(hits) == 1 and hits[0]["cost_usd"] == 0


def test_cache_is_scoped_to_the_workspace(env: Env) -> None:
    env.provider()
    env.route("cached", cache_ttl=60)
    key, _ = env.key()
    OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="cached", messages=MSG
    )
    assert env.admin.post("/api/workspaces", json={"slug": "other"}).status_code == 201
    gw = env.app.state.platform.gateway
    from shipyard.gateway.core.service import _cache_key

    body = {"model": "cached", "messages": MSG}
    ws = next(iter(gw.snapshot.routes))[0]
    assert _cache_key(ws, "cached", "chat", body) != _cache_key("ws_other", "cached", "chat", body)
