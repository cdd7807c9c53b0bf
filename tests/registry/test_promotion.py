"""Aliases, promotion and rollback, end to end: gateway routes that point at a registry
alias move their live traffic when a promotion is approved (four eyes), roll back in
one call, and split traffic 90/10 between two versions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import as_key, key_for
from tests.gateway.conftest import Env, make_env
from tests.registry.support import (
    chat,
    model,
    person,
    provider_source,
    safetensors,
    upload,
)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def promote(client: httpx.Client, name: str, version: int, env: str) -> httpx.Response:
    return client.post(
        "/api/registry/promotions",
        json={"name": name, "version": version, "environment": env, "note": "ready"},
    )


def test_four_eyes_promotion_moves_live_traffic_and_rolls_back(gw: Env) -> None:
    gw.provider()
    model(gw, "support", provider_source("model-one"), provider_source("model-two"))
    target = {"kind": "registry", "refs": [{"ref": "support@production"}]}
    r = gw.admin.put("/api/gateway/routes/support", json={"name": "support", "target": target})
    assert r.status_code == 200, r.text
    key, _ = gw.key()
    # no production version yet: a clear 503 naming the alias
    r = chat(gw, key, "support")
    assert r.status_code == 503 and "production" in r.text

    dev = person(gw, "dev@example.com", "developer")
    ana = person(gw, "ana@example.com", "admin")
    bo = person(gw, "bo@example.com", "admin")
    r = promote(dev, "support", 1, "production")
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["state"] == "pending" and first["requested_by"] == "dev@example.com"
    # the requester cannot approve (a developer lacks the approver permission anyway)
    r = dev.post(f"/api/registry/promotions/{first['id']}/approve", json={})
    assert r.status_code == 403
    assert chat(gw, key, "support").status_code == 503  # nothing moved
    assert bo.post(f"/api/registry/promotions/{first['id']}/approve", json={}).status_code == 200
    assert chat(gw, key, "support").status_code == 200
    assert gw.upstream.requests[-1]["model"] == "model-one"

    # an approver's own request needs another approver: four eyes
    r = promote(ana, "support", 2, "production")
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    r = ana.post(f"/api/registry/promotions/{second}/approve", json={})
    assert r.status_code == 403 and "four eyes" in r.json()["detail"]
    # an API key is not a person, even an owner's
    r = gw.admin.post(f"/api/registry/promotions/{second}/approve", json={})
    assert r.status_code == 403
    # one pending request per environment
    assert promote(dev, "support", 2, "production").status_code == 409
    r = bo.post(f"/api/registry/promotions/{second}/approve", json={"note": "lgtm"})
    assert r.status_code == 200 and r.json()["state"] == "approved"
    assert bo.post(f"/api/registry/promotions/{second}/approve", json={}).status_code == 409
    assert chat(gw, key, "support").status_code == 200
    assert gw.upstream.requests[-1]["model"] == "model-two"
    got = gw.admin.get("/api/registry/models/support").json()
    assert got["aliases"] == {"production": 2}

    # one call rolls back; approvers only
    assert dev.post("/api/registry/models/support/aliases/production/rollback").status_code == 403
    r = ana.post("/api/registry/models/support/aliases/production/rollback")
    assert r.status_code == 200, r.text
    assert r.json()["aliases"] == {"production": 1}
    assert chat(gw, key, "support").status_code == 200
    assert gw.upstream.requests[-1]["model"] == "model-one"

    moves = gw.admin.get("/api/registry/models/support/history").json()
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in moves] == [
        (2, 1, "rollback"),
        (1, 2, "promotion"),
        (None, 1, "promotion"),
    ]
    # request, approval, refusal and alias moves are in the audit log
    audit = gw.admin.get("/api/audit", params={"limit": 200}).json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    actions = [(e["action"], e["outcome"]) for e in entries]
    assert ("registry.promotions.request", "success") in actions
    assert ("registry.promotions.approve", "success") in actions
    assert ("registry.alias.move", "success") in actions
    assert any(a == "registry.promotions.approve" and o != "success" for a, o in actions)
    assert ("registry.aliases.rollback", "success") in actions


def test_reject_cancel_and_gates(gw: Env) -> None:
    gw.provider()
    model(gw, "ranker", provider_source("r-1"))
    r = gw.admin.post(
        "/api/registry/models/ranker/versions",
        json={"source": provider_source("r-2"), "metadata": {"owner": "search", "eval_run": "e1"}},
    )
    assert r.status_code == 201
    dev = person(gw, "dev@example.com", "developer")
    ana = person(gw, "ana@example.com", "admin")
    # staging needs no second person by default, but a gate: required metadata
    r = gw.admin.put(
        "/api/registry/policies/staging",
        json={"four_eyes": False, "gates": {"required_metadata": ["owner", "eval_run"]}},
    )
    assert r.status_code == 200, r.text
    r = promote(dev, "ranker", 1, "staging")
    assert r.status_code == 409 and "missing metadata: owner, eval_run" in r.json()["detail"]
    assert gw.admin.get("/api/registry/promotions").json() == []  # nothing half-written
    r = promote(dev, "ranker", 2, "staging")
    assert r.status_code == 201 and r.json()["state"] == "approved"
    assert r.json()["gates"] == [
        {"gate": "required_metadata", "passed": True, "detail": "has owner, eval_run"}
    ]
    assert gw.admin.get("/api/registry/models/ranker").json()["aliases"] == {"staging": 2}
    # environments move only through promotions; custom aliases directly
    r = dev.put("/api/registry/models/ranker/aliases/production", json={"version": 1})
    assert r.status_code == 409 and "request a promotion" in r.json()["detail"]
    r = dev.put("/api/registry/models/ranker/aliases/champion", json={"version": 1})
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 1, "staging": 2}
    # reject and cancel
    pending = promote(dev, "ranker", 2, "production").json()["id"]
    assert dev.post(f"/api/registry/promotions/{pending}/reject", json={}).status_code == 403
    r = ana.post(f"/api/registry/promotions/{pending}/reject", json={"note": "not yet"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    again = promote(dev, "ranker", 2, "production").json()["id"]
    assert ana.post(f"/api/registry/promotions/{again}/cancel").status_code == 403
    r = dev.post(f"/api/registry/promotions/{again}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    states = [p["state"] for p in gw.admin.get("/api/registry/promotions").json()]
    assert sorted(states) == ["approved", "cancelled", "rejected"]
    # bad input is named
    for body, field in (
        ({"name": "ranker", "version": 1, "environment": "prod"}, "environment"),
        ({"name": "ranker", "version": 0, "environment": "staging"}, "version"),
        ({"name": "ranker", "version": 9, "environment": "staging"}, "version 9"),
        ({"name": "nope", "version": 1, "environment": "staging"}, "nope"),
    ):
        r = dev.post("/api/registry/promotions", json=body)
        assert 400 <= r.status_code < 500 and field in r.text, (body, r.text)
    r = gw.admin.put("/api/registry/policies/staging", json={"gates": {"vibes": True}})
    assert r.status_code == 400 and "gates.vibes" in r.text


def test_canary_split_proportions(gw: Env) -> None:
    gw.provider()
    model(gw, "support", provider_source("stable"), provider_source("candidate"))
    for alias, version in (("champion", 1), ("challenger", 2)):
        r = gw.admin.put(f"/api/registry/models/support/aliases/{alias}", json={"version": version})
        assert r.status_code == 200, r.text
    target = {
        "kind": "registry",
        "refs": [
            {"ref": "support@champion", "weight": 90},
            {"ref": "support@challenger", "weight": 10},
        ],
    }
    r = gw.admin.put("/api/gateway/routes/support", json={"name": "support", "target": target})
    assert r.status_code == 200, r.text
    sources = sorted(d["source"] for d in r.json()["deployments"])
    assert sources == ["support@challenger=v2", "support@champion=v1"]
    key, _ = gw.key()
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}) as c:
        for _ in range(1000):
            r = c.post(
                "/v1/chat/completions",
                json={"model": "support", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code == 200
            seen[r.headers["x-shipyard-deployment"].rsplit(".", 1)[-1]] += 1
    assert set(seen) == {"support@champion=v1", "support@challenger=v2"}
    # 10% of 1,000: mean 100, standard deviation ~9.5; +-4.5 sd
    assert 57 <= seen["support@challenger=v2"] <= 143, seen
    models = Counter(req["model"] for req in gw.upstream.requests[-1000:])
    assert models["candidate"] == seen["support@challenger=v2"]


def test_versions_are_immutable_and_refs_resolve(client: TestClient) -> None:
    """On SQLite and PostgreSQL: numbering, immutability, references, conflicts."""
    assert client.post("/api/registry/models", json={"name": "m"}).status_code == 201
    assert client.post("/api/registry/models", json={"name": "m"}).status_code == 409
    for i in range(3):
        r = client.post(
            "/api/registry/models/m/versions",
            json={"source": {"kind": "route", "route": "smollm2"}, "message": f"v{i + 1}"},
        )
        assert r.status_code == 201 and r.json()["number"] == i + 1
    assert client.put("/api/registry/models/m/versions/2", json={}).status_code == 405
    r = client.get("/api/registry/models/m/resolve/latest")
    assert r.json()["number"] == 3
    assert client.get("/api/registry/models/m/resolve/v2").json()["message"] == "v2"
    assert client.get("/api/registry/models/m/resolve/nope").status_code == 404
    assert client.get("/api/registry/models/m/resolve/..%2f..").status_code in (400, 404)
    r = client.put("/api/registry/models/m/aliases/champion", json={"version": 2})
    assert r.status_code == 200
    assert client.get("/api/registry/models/m/resolve/champion").json()["number"] == 2
    assert client.put("/api/registry/models/m/aliases/latest", json={"version": 1}).status_code in (
        400,
        422,
    )
    assert (
        client.put("/api/registry/models/m/aliases/champion", json={"version": 7}).status_code
        == 404
    )
    assert client.delete("/api/registry/models/m").status_code == 409  # an alias names it
    assert client.delete("/api/registry/models/m/aliases/champion").status_code == 204
    # a release pins members that exist
    r = client.post("/api/registry/releases", json={"name": "app"})
    assert r.status_code == 201
    r = client.post(
        "/api/registry/releases/app/versions",
        json={"members": [{"kind": "model", "name": "m", "version": 9}]},
    )
    assert r.status_code == 400 and "members.0" in r.text
    r = client.post(
        "/api/registry/releases/app/versions",
        json={"members": [{"kind": "model", "name": "m", "version": 2}]},
    )
    assert r.status_code == 201, r.text
    # dev needs no second person: a promotion by key is approved at once
    r = client.post(
        "/api/registry/promotions",
        json={"kind": "release", "name": "app", "version": 1, "environment": "dev"},
    )
    assert r.status_code == 201 and r.json()["state"] == "approved", r.text
    assert client.get("/api/registry/releases/app").json()["aliases"] == {"dev": 1}
    app_key = as_key(key_for(client, "app"))
    assert client.get("/api/registry/models/m", headers=app_key).status_code == 200
    assert (
        client.post("/api/registry/models", json={"name": "x"}, headers=app_key).status_code == 403
    )
    r = client.post(
        "/api/registry/models/m/versions", json={"source": {"kind": "gguf", "artifact": "../x"}}
    )
    assert r.status_code in (400, 422) and "artifact" in r.text


def test_lineage_graph(client: TestClient) -> None:
    client.post("/api/registry/models", json={"name": "base"})
    client.post(
        "/api/registry/models/base/versions",
        json={"source": {"kind": "route", "route": "smollm2"}},
    )
    client.post("/api/registry/models", json={"name": "tuned"})
    adapter = upload(client, "adapter.safetensors", safetensors())
    r = client.post(
        "/api/registry/models/tuned/versions",
        json={
            "source": {"kind": "lora", "base": "base@1", "artifact": adapter},
            "lineage": {
                "base_model": "base@1",
                "datasets": [{"name": "tickets", "version": "3"}],
                "job": "ft_123",
                "evaluations": ["eval_9"],
            },
        },
    )
    assert r.status_code == 201, r.text
    client.post("/api/registry/releases", json={"name": "app"})
    members = [{"kind": "model", "name": "tuned", "version": 1}]
    r = client.post("/api/registry/releases/app/versions", json={"members": members})
    assert r.status_code == 201
    g = client.get("/api/registry/models/tuned/versions/1/lineage").json()
    edges = {(e["from"], e["relation"], e["to"]) for e in g["edges"]}
    assert edges == {
        ("model:base@1", "base_of", "model:tuned@1"),
        ("dataset:tickets@3", "trained_on", "model:tuned@1"),
        ("job:ft_123", "produced", "model:tuned@1"),
        ("model:tuned@1", "evaluated_by", "evaluation:eval_9"),
        ("model:tuned@1", "pinned_in", "release:app@1"),
    }
    assert {n["id"] for n in g["nodes"]} == {p for e in edges for p in (e[0], e[2])}
    r = client.get("/api/registry/releases/app/versions/1/lineage").json()
    assert {(e["from"], e["relation"]) for e in r["edges"]} == {("model:tuned@1", "pinned_in")}
    assert client.get("/api/registry/models/tuned/versions/7/lineage").status_code == 404
