"""Retries, Retry-After, fallbacks, timeouts, cooldowns, broken streams, malformed replies:
each scripted on a real fake upstream."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.gateway.conftest import Env
from tests.gateway.fake_upstream import FakeUpstream

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(env: Env) -> OpenAI:
    env.provider()
    key, _ = env.key()
    return OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)


def test_429_is_retried_after_retry_after(client: OpenAI, env: Env) -> None:
    env.route("m", retries=2)
    env.upstream.fail(429, retry_after="1")
    start = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MSG)
    assert time.monotonic() - start >= 0.95  # waited as the upstream asked
    assert raw.headers["x-shipyard-retries"] == "1"
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert env.records(route="m")[0]["retries"] == 1


def test_a_5xx_burst_exhausts_retries_then_falls_back(client: OpenAI, env: Env) -> None:
    env.route("backup", {"provider": "fake", "model": "backup-model"}, retries=0)
    env.route("primary", retries=2, fallbacks={"server_error": ["backup"]})
    env.upstream.fail(500, times=3)
    raw = client.chat.completions.with_raw_response.create(model="primary", messages=MSG)
    assert raw.headers["x-shipyard-fallbacks"] == "backup"
    assert [r["model"] for r in env.upstream.requests] == ["gpt-4o-mini"] * 3 + ["backup-model"]
    rec = env.records(route="primary")[0]
    assert rec["fallbacks"] == "backup" and rec["retries"] == 2 and rec["model"] == "backup-model"


def test_client_errors_are_not_retried_and_map_to_400(client: OpenAI, env: Env) -> None:
    env.route("m", retries=3)
    env.upstream.fail(400, message="bad thing")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=MSG)
    assert len(env.upstream.requests) == 1


def test_context_length_falls_back_to_a_bigger_model(client: OpenAI, env: Env) -> None:
    env.route("big", {"provider": "fake", "model": "big-context"}, retries=0)
    env.route("small", retries=2, fallbacks={"context_length": ["big"]})
    env.upstream.fail(400, message="maximum context length exceeded")
    raw = client.chat.completions.with_raw_response.create(model="small", messages=MSG)
    assert raw.headers["x-shipyard-fallbacks"] == "big"
    assert len(env.upstream.requests) == 2


def test_hang_times_out(client: OpenAI, env: Env) -> None:
    env.route(
        "m",
        {
            "provider": "fake",
            "model": "x",
            "timeouts": {"connect": 1, "first_token": 0.3, "total": 0.5},
        },
        retries=0,
    )
    env.upstream.then("hang", delay=5)
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=MSG)
    assert info.value.status_code == 504 and time.monotonic() - start < 3


def test_slow_first_token_within_budget_is_fine_and_timed(client: OpenAI, env: Env) -> None:
    env.route(
        "m",
        {"provider": "fake", "model": "x", "timeouts": {"first_token": 2, "total": 10}},
        retries=0,
    )
    env.upstream.then("slow", delay=0.4)
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: hi"
    assert env.records(route="m")[0]["ttft_ms"] >= 400


def test_slow_first_token_over_budget_is_retried(client: OpenAI, env: Env) -> None:
    env.route(
        "m",
        {"provider": "fake", "model": "x", "timeouts": {"first_token": 0.3, "total": 10}},
        retries=1,
    )
    env.upstream.then("slow", delay=2)
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: hi"
    assert env.records(route="m")[0]["retries"] == 1


def test_a_truncated_stream_ends_with_an_error_event(client: OpenAI, env: Env) -> None:
    env.route("m", retries=0)
    env.upstream.then("truncated", content="one two three four five")
    with httpx.stream(
        "POST",
        env.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": "m", "messages": MSG, "stream": True},
    ) as r:
        body = r.read().decode()
    assert '"one"' in body and '" two"' in body and '"three"' not in body
    assert '"error"' in body and body.rstrip().endswith("[DONE]")
    rec = env.records(route="m")[0]
    assert rec["status"] == 502 and rec["completion_tokens"] > 0  # counted by the tokenizer


def test_malformed_json_is_retried_then_502(client: OpenAI, env: Env) -> None:
    env.route("m", retries=1)
    env.upstream.then("malformed").then("malformed")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=MSG)
    assert info.value.status_code == 502 and "not JSON" in str(info.value)
    env.route("m2", retries=1)  # a fresh deployment: one malformed reply, then a good one
    env.upstream.then("malformed")
    assert client.chat.completions.create(model="m2", messages=MSG).choices


def test_failing_deployment_cools_down_and_traffic_moves(client: OpenAI, env: Env) -> None:
    other = FakeUpstream().start()
    try:
        env.provider("healthy", base=other.url)
        env.route(
            "m",
            {"provider": "fake", "model": "a"},
            {"provider": "healthy", "model": "b"},
            retries=1,
            strategy="least_busy",
        )
        env.upstream.fail(503, times=1000)
        for _ in range(20):  # random tie-breaks: 20 calls pick the failing one 3+ times
            client.chat.completions.create(model="m", messages=MSG)
        routes = {r["name"]: r for r in env.admin.get("/api/gateway/routes").json()}
        health = {d["provider"]: d["health"] for d in routes["m"]["deployments"]}
        assert health["fake"]["state"] == "cooldown" and health["healthy"]["state"] == "healthy"

        def client_calls() -> int:  # probes send "ping"; clients send "hi"
            return sum(1 for r in env.upstream.requests if r["messages"] == MSG)

        before = client_calls()
        for _ in range(5):
            client.chat.completions.create(model="m", messages=MSG)
        assert client_calls() == before  # cooled: no client traffic reaches it
        # the active probe (a 1-token call) brings it back once it answers
        env.upstream.script.clear()
        gw = env.app.state.platform.gateway
        dep_id = next(d["id"] for d in routes["m"]["deployments"] if d["provider"] == "fake")
        deadline = time.monotonic() + 10
        while gw.balancer.status(dep_id)["state"] != "healthy":
            assert time.monotonic() < deadline, "the probe never brought the deployment back"
            time.sleep(0.1)
        assert env.upstream.requests[-1]["max_tokens"] == 1  # the probe's call
    finally:
        other.stop()


def test_upstream_auth_failure_is_not_the_clients_fault(client: OpenAI, env: Env) -> None:
    env.route("m", retries=0)
    env.upstream.fail(401, message="bad upstream key")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=MSG)
    assert info.value.status_code == 502
