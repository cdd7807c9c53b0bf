"""Capacity-aware routing: a deployment that runs `slots` requests at once and is full
queues the rest; a request that would wait there past its first-token timeout goes to
a less loaded deployment, else to the route's fallback for `timeout`. Scripted on the
fake upstream (a real HTTP server on loopback)."""

from __future__ import annotations

import threading

import pytest
from openai import OpenAI

from shipyard.errors import UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec, RouteSpec, Timeouts
from shipyard.gateway.core.balancer import Balancer
from tests.gateway.conftest import Env

MSG = [{"role": "user", "content": "hi"}]


def _dep(name: str, first_token: float = 1.0) -> Deployment:
    spec = ProviderSpec(id=f"p-{name}", name=name, kind="openai", workspace_id=None)
    return Deployment(
        id=name, route="r", provider=spec, model=name, timeouts=Timeouts(first_token=first_token)
    )


def _busy(b: Balancer, dep: Deployment, in_flight: int, mean_ms: float) -> None:
    b.begin(dep)
    b.succeeded(dep, mean_ms)
    for _ in range(in_flight):
        b.begin(dep)


def test_a_full_deployment_is_skipped_while_another_has_room() -> None:
    a, b = _dep("a"), _dep("b")
    balancer = Balancer()
    balancer.capacity = lambda dep: 2
    _busy(balancer, a, in_flight=4, mean_ms=900)  # 3rd in a queue of slots 2: 1.35 s > 1 s
    route = RouteSpec(id="r", name="r", workspace_id=None, kind="chat", deployments=(a, b))
    assert {balancer.pick(route, set()).id for _ in range(20)} == {"b"}
    assert balancer.wait_s(a, 2) == pytest.approx(3 * 0.9 / 2)


def test_least_busy_compares_load_per_slot() -> None:
    a, b = _dep("a", 100), _dep("b", 100)
    balancer = Balancer()
    balancer.capacity = lambda dep: 8 if dep.id == "a" else 1
    _busy(balancer, a, in_flight=3, mean_ms=10)  # 3 of 8 slots
    _busy(balancer, b, in_flight=1, mean_ms=10)  # 1 of 1
    route = RouteSpec(
        id="r", name="r", workspace_id=None, kind="chat", deployments=(a, b), strategy="least_busy"
    )
    assert {balancer.pick(route, set()).id for _ in range(20)} == {"a"}


def test_every_deployment_full_fails_with_timeout_naming_the_wait() -> None:
    a = _dep("a", first_token=0.5)
    balancer = Balancer()
    balancer.capacity = lambda dep: 1
    _busy(balancer, a, in_flight=2, mean_ms=400)  # two ahead on one slot: 0.8 s
    route = RouteSpec(id="r", name="r", workspace_id=None, kind="chat", deployments=(a,))
    with pytest.raises(UpstreamError) as exc:
        balancer.pick(route, set())
    assert exc.value.error_class == "timeout"
    assert "would wait about 0.8 s" in str(exc.value) and "0.5 s" in str(exc.value)
    # a deployment whose capacity is unknown is never full
    balancer.capacity = lambda dep: None
    assert balancer.pick(route, set()) is a


def test_a_request_past_its_first_token_timeout_goes_to_the_fallback(env: Env) -> None:
    env.provider("slow", options={"slots": 1})
    env.provider("spare")
    env.route("spare", {"provider": "spare", "model": "spare-model"}, retries=0)
    env.route(
        "one-slot",
        {"provider": "slow", "model": "slow-model", "timeouts": {"first_token": 0.5, "total": 10}},
        retries=0,
        fallbacks={"timeout": ["spare"]},
    )
    key, _ = env.key()
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    env.upstream.then("slow", delay=0.8)  # learns the deployment's call time: 0.8 s
    assert client.chat.completions.create(model="one-slot", messages=MSG).model == "slow-model"

    env.upstream.then("slow", delay=1.5)  # holds the one slot
    first = threading.Thread(
        target=lambda: client.chat.completions.create(model="one-slot", messages=MSG)
    )
    first.start()
    try:
        for _ in range(200):  # until the gateway has sent it
            if len(env.upstream.requests) == 2:
                break
            threading.Event().wait(0.01)
        raw = client.chat.completions.with_raw_response.create(model="one-slot", messages=MSG)
    finally:
        first.join()
    assert raw.headers["x-shipyard-fallbacks"] == "spare"
    assert raw.parse().model == "spare-model"
    rec = [r for r in env.records(route="one-slot") if r["fallbacks"]][0]
    assert rec["model"] == "spare-model"
    # the full deployment was not failed for it: no cooldown, the next call is its own
    assert client.chat.completions.create(model="one-slot", messages=MSG).model == "slow-model"
