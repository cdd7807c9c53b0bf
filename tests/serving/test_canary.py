"""Canaries: a registered model version on a share of a route's live traffic, judged by
an online score and rolled back (or promoted) by the platform itself, audited.

The live traffic is real calls through the gateway to the scripted upstream on
loopback; the online scores are feedback on those calls' traces, scripted per arm
(the canary's answers score low): what an online evaluation rule or reviewers would
write."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.serving.canary import judge
from tests.gateway.conftest import Env, make_env
from tests.registry.support import model, provider_source


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support", {"provider": "fake", "model": "gpt-4o-mini"})
        model(e, "support-model", provider_source("model-a"), provider_source("model-b"))
        r = e.admin.put("/api/registry/models/support-model/aliases/stable", json={"version": 1})
        assert r.status_code == 200, r.text
        yield e


def test_the_judgement() -> None:
    rng = random.Random(3)
    good = [0.8 + rng.random() * 0.1 for _ in range(40)]
    bad = [0.4 + rng.random() * 0.1 for _ in range(40)]
    close = [0.79 + rng.random() * 0.1 for _ in range(40)]
    kw: dict[str, Any] = {"margin": 0.05, "min_samples": 30, "promote_after_s": 60}
    assert judge(good, bad[:10], elapsed_s=999, **kw).action == "wait"  # too few
    down = judge(good, bad, elapsed_s=1, **kw)
    assert down.action == "rollback" and down.figures["difference"]["ci_high"] < 0
    assert judge(good, close, elapsed_s=1, **kw).action == "wait"  # not below the margin
    assert judge(good, close, elapsed_s=61, **kw).action == "promote"
    assert judge(good, good, elapsed_s=61, **kw).action == "promote"


def _traffic(env: Env, n: int) -> list[tuple[str, str]]:
    """`n` calls on the route: (trace id, the model that answered)."""
    out = []
    for i in range(n):
        r = env.admin.post(
            "/v1/chat/completions",
            json={"model": "support", "messages": [{"role": "user", "content": f"q{i}"}]},
        )
        assert r.status_code == 200, r.text
        out.append((r.headers["x-shipyard-trace-id"], r.json()["model"]))
    return out


def _score(env: Env, calls: list[tuple[str, str]], scores: dict[str, float]) -> None:
    rng = random.Random(7)
    for trace_id, answered in calls:
        score = scores[answered] + rng.uniform(-0.05, 0.05)
        r = env.admin.post(
            "/api/feedback", json={"trace_id": trace_id, "name": "quality", "score": score}
        )
        assert r.status_code in (200, 201, 202), r.text
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()
    services["feedback"].resolve_pending()


def _start(env: Env, **extra: Any) -> dict[str, Any]:
    body = {"route": "support", "model": "support-model", "version": 2,
            "stable_alias": "stable", "percent": 50, "metric": "quality", "margin": 0.1,
            "min_samples": 8, **extra}  # fmt: skip
    r = env.admin.post("/api/serving/canaries", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_worse_canary_is_rolled_back_automatically(env: Env) -> None:
    canary = _start(env)
    assert canary["status"] == "running" and canary["stable_version"] == 1
    calls = _traffic(env, 40)
    answered = {m for _, m in calls}
    assert answered == {"model-a", "model-b"}  # both arms served
    _score(env, calls, {"model-a": 0.9, "model-b": 0.3})
    judged = env.admin.post(f"/api/serving/canaries/{canary['id']}/judge").json()
    assert judged["status"] == "rolled_back", judged
    figures = judged["decision"]
    assert figures["canary"]["mean"] < figures["stable"]["mean"] - 0.1
    assert figures["difference"]["ci_high"] < 0
    # the route is back to what it was: only its own deployment answers
    assert {m for _, m in _traffic(env, 5)} == {"gpt-4o-mini"}
    audit = env.admin.get("/api/audit", params={"action": "serving.canary.rollback"}).json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    assert any(e["target"] == f"canary:{canary['id']}" for e in entries), audit
    again = env.admin.post(f"/api/serving/canaries/{canary['id']}/stop")
    assert again.status_code == 409


def test_a_canary_that_holds_is_promoted(env: Env) -> None:
    canary = _start(env, promote_after_seconds=0)
    calls = _traffic(env, 30)
    _score(env, calls, {"model-a": 0.8, "model-b": 0.82})
    judged = env.admin.post(f"/api/serving/canaries/{canary['id']}/judge").json()
    assert judged["status"] == "promoted", judged
    assert {m for _, m in _traffic(env, 5)} == {"model-b"}  # the canary version alone


def test_waiting_for_scores_and_refusals(env: Env) -> None:
    canary = _start(env)
    judged = env.admin.post(f"/api/serving/canaries/{canary['id']}/judge").json()
    assert judged["status"] == "running" and judged["decision"]["action"] == "wait"
    r = env.admin.post("/api/serving/canaries", json={"route": "support", "model": "support-model",
                                                      "version": 2, "metric": "quality",
                                                      "stable_alias": "stable"})  # fmt: skip
    assert r.status_code == 409 and "already has a running canary" in r.json()["detail"]
    stopped = env.admin.post(f"/api/serving/canaries/{canary['id']}/stop").json()
    assert stopped["status"] == "stopped"
    assert {m for _, m in _traffic(env, 3)} == {"gpt-4o-mini"}
    bad = [
        ({"route": "nope"}, "route"),
        ({"stable_alias": "nope"}, "stable_alias"),
        ({"version": 1}, "version"),
        ({"percent": 100}, "percent"),
    ]
    for change, field in bad:
        body = {"route": "support", "model": "support-model", "version": 2,
                "stable_alias": "stable", "metric": "quality", **change}  # fmt: skip
        r = env.admin.post("/api/serving/canaries", json=body)
        assert r.status_code in (400, 422), (change, r.json())
        assert r.json()["detail"].startswith(field), (change, r.json())
    r = env.admin.post("/api/serving/canaries",
                       json={"route": "support", "model": "nope", "version": 2,
                             "metric": "quality"})  # fmt: skip
    assert r.status_code == 404
    assert env.admin.get("/api/serving/canaries/cnr_missing").status_code == 404
    viewer, _ = env.key("canary-viewer", role="viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(f"{env.url}/api/serving/canaries", headers=headers).status_code == 200
    r = httpx.post(f"{env.url}/api/serving/canaries/{canary['id']}/judge", headers=headers)
    assert r.status_code == 403
