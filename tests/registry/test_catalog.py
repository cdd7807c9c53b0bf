"""The model catalog: YAML in and out, filters, and a gateway route that selects its
model by catalog query (resolved into the snapshot, moved by catalog changes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from tests.conftest import as_key, key_for
from tests.gateway.conftest import Env, make_env
from tests.registry.support import chat

CATALOG = """
models:
  - name: big-tools
    type: chat
    description: Large, with tools.
    provider: fake
    model: model-big
    capabilities: [chat, tools, summarization]
    benchmarks:
      accuracy: {mmlu: 0.86}
      latency_ms: 900
      cost_per_1k: {input: 0.005, output: 0.015}
    constraints:
      max_context_tokens: 128000
      max_output_tokens: 4096
      licence: proprietary
      commercial_use: true
      data_residency: [us]
    owner: platform
  - name: small-tools
    type: chat
    provider: fake
    model: model-small
    capabilities: [chat, tools]
    benchmarks:
      cost_per_1k: {input: 0.0002, output: 0.0006}
    constraints:
      max_context_tokens: 32768
      licence: apache-2.0
      commercial_use: true
  - name: tiny-no-tools
    type: chat
    provider: fake
    model: model-tiny
    capabilities: [chat, summarization]
    benchmarks:
      cost_per_1k: {input: 0.00001, output: 0.00002}
    constraints:
      max_context_tokens: 8192
      licence: cc-by-nc-4.0
      commercial_use: false
"""
YAML = {"content-type": "application/yaml"}


def names(entries: list[dict[str, object]]) -> list[object]:
    return [e["name"] for e in entries]


def test_import_export_round_trip(client: TestClient) -> None:
    r = client.post("/api/registry/catalog/import", content=CATALOG, headers=YAML)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 3, "updated": 0, "deleted": 0}
    exported = client.get("/api/registry/catalog/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/yaml")
    doc = yaml.safe_load(exported.text)
    assert names(doc["models"]) == ["big-tools", "small-tools", "tiny-no-tools"]
    assert doc["models"][0]["benchmarks"]["accuracy"] == {"mmlu": 0.86}
    # what was exported reads back as the same entries, and exports the same text
    again = client.post("/api/registry/catalog/import", content=exported.text, headers=YAML)
    assert again.json() == {"created": 0, "updated": 3, "deleted": 0}
    assert client.get("/api/registry/catalog/export").text == exported.text
    original = {e["name"]: e for e in yaml.safe_load(CATALOG)["models"]}
    for entry in doc["models"]:
        want = original[entry["name"]]
        for field in ("provider", "model", "capabilities", "constraints"):
            for k, v in want[field].items() if isinstance(want[field], dict) else []:
                assert entry[field][k] == v
    # replace: entries the file omits go
    only = yaml.safe_dump({"models": [doc["models"][1]]})
    r = client.post("/api/registry/catalog/import?replace=true", content=only, headers=YAML)
    assert r.json() == {"created": 0, "updated": 1, "deleted": 2}
    listed = client.get("/api/registry/catalog").json()
    assert "small-tools" in names(listed) and "big-tools" not in names(listed)
    # the built-in local models are in every workspace's catalog, not in its export
    assert {"smollm2", "all-minilm-l6-v2"} <= set(names(listed))
    assert "smollm2" not in client.get("/api/registry/catalog/export").text


def test_filters(client: TestClient) -> None:
    client.post("/api/registry/catalog/import", content=CATALOG, headers=YAML)

    def search(**params: object) -> list[object]:
        r = client.get("/api/registry/catalog", params=params)
        assert r.status_code == 200, r.text
        return names(r.json())

    assert search(capabilities="summarization", min_context=8000, provider="fake") == [
        "tiny-no-tools",
        "big-tools",
    ]  # cheapest first
    assert search(capabilities="summarization", commercial_use=True) == ["big-tools"]
    assert search(capabilities=["tools", "chat"], max_cost=0.001) == ["small-tools"]
    assert search(capabilities="tools", min_context=100_000) == ["big-tools"]
    assert search(licence=["apache-2.0", "mit"], provider="fake") == ["small-tools"]
    assert search(benchmark="mmlu", min_score=0.8) == ["big-tools"]
    assert search(q="large") == ["big-tools"]
    assert search(provider="fake", order="context") == ["big-tools", "small-tools", "tiny-no-tools"]
    assert search(capabilities="tools", order="accuracy:mmlu")[0] == "big-tools"
    assert search(capabilities="image-generation") == []
    # an entry with no latency never qualifies for a latency bound
    assert search(max_latency_ms=1000) == ["big-tools"]
    # unknown filters are refused, and so are bad values, each named
    r = client.get("/api/registry/catalog", params={"min_contxt": 5})
    assert r.status_code in (400, 422) and "min_contxt" in r.text
    r = client.get("/api/registry/catalog", params={"order": "price; drop table"})
    assert r.status_code in (400, 422) and "order" in r.text


def test_bad_files_are_refused_whole(client: TestClient) -> None:
    bad = yaml.safe_load(CATALOG)
    bad["models"][1]["constraints"]["max_context_tokens"] = -5
    r = client.post("/api/registry/catalog/import", content=yaml.safe_dump(bad), headers=YAML)
    assert r.status_code == 400, r.text
    assert "models.1.constraints.max_context_tokens" in r.json()["detail"]
    assert [e for e in client.get("/api/registry/catalog").json() if not e["builtin"]] == []
    for body, status in (
        ("models: [ {name: a", 400),  # not YAML
        ("models: 3", 400),
        ("- {name: a}\n- {name: a}\n", 400),  # twice
        ("- {name: '../x'}\n", 400),
        ("- {name: a, surprise: 1}\n", 400),
    ):
        r = client.post("/api/registry/catalog/import", content=body, headers=YAML)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post("/api/registry/catalog/import", content=b"\xff\xfe", headers=YAML)
    assert r.status_code == 400 and "UTF-8" in r.text
    r = client.post("/api/registry/catalog/import", json={"models": []})
    assert r.status_code == 415
    r = client.put("/api/registry/catalog/x", json={"name": "y"})
    assert r.status_code == 400 and "name" in r.text


def test_benchmarks_from_evaluations_and_permissions(client: TestClient) -> None:
    client.post("/api/registry/catalog/import", content=CATALOG, headers=YAML)
    r = client.post(
        "/api/registry/catalog/small-tools/benchmarks", json={"dataset": "mmlu", "score": 0.7}
    )
    assert r.status_code == 200, r.text
    assert r.json()["benchmarks"]["accuracy"] == {"mmlu": 0.7}
    r = client.post("/api/registry/catalog/small-tools/benchmarks", json={"dataset": "mmlu"})
    assert r.status_code == 400
    viewer = as_key(key_for(client, "viewer"))
    assert client.get("/api/registry/catalog", headers=viewer).status_code == 200
    r = client.put(
        "/api/registry/catalog/x", json={"name": "x", "provider": "fake"}, headers=viewer
    )
    assert r.status_code == 403
    r = client.post("/api/registry/catalog/import", content=CATALOG, headers={**YAML, **viewer})
    assert r.status_code == 403
    assert client.delete("/api/registry/catalog/smollm2").status_code == 404  # built in
    stranger = TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)
    assert stranger.get("/api/registry/catalog").status_code == 401


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def test_a_route_chosen_by_catalog_query_follows_the_catalog(gw: Env) -> None:
    gw.provider()
    r = gw.admin.post("/api/registry/catalog/import", content=CATALOG, headers=YAML)
    assert r.status_code == 200, r.text
    query = {"capabilities": ["tools"], "min_context": 32000, "commercial_use": True}
    body = {"name": "cheap-tools", "target": {"kind": "catalog", "query": query}}
    r = gw.admin.put("/api/gateway/routes/cheap-tools", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["deployments"][0]["model"] == "model-small"
    assert r.json()["deployments"][0]["source"] == "catalog:small-tools"
    key, _ = gw.key()
    assert chat(gw, key, "cheap-tools").status_code == 200
    assert gw.upstream.requests[-1]["model"] == "model-small"
    # a cheaper qualifying model joins the catalog: the route moves to it
    cheaper = {
        "name": "cheaper-tools",
        "provider": "fake",
        "model": "model-cheaper",
        "capabilities": ["tools"],
        "benchmarks": {"cost_per_1k": {"input": 0.0001, "output": 0.0001}},
        "constraints": {"max_context_tokens": 65536, "commercial_use": True},
    }
    assert gw.admin.put("/api/registry/catalog/cheaper-tools", json=cheaper).status_code == 200
    assert chat(gw, key, "cheap-tools").status_code == 200
    assert gw.upstream.requests[-1]["model"] == "model-cheaper"
    # ...and back when it no longer qualifies
    cheaper["constraints"] = {"max_context_tokens": 4096, "commercial_use": True}
    assert gw.admin.put("/api/registry/catalog/cheaper-tools", json=cheaper).status_code == 200
    assert chat(gw, key, "cheap-tools").status_code == 200
    assert gw.upstream.requests[-1]["model"] == "model-small"
    # nothing qualifies: a clear 503, not a 500
    body["target"]["query"] = {"capabilities": ["tools"], "min_context": 10**7}
    r = gw.admin.put("/api/gateway/routes/cheap-tools", json=body)
    assert r.status_code == 200 and "no catalog entry qualifies" in r.json()["problem"]
    r = chat(gw, key, "cheap-tools")
    assert r.status_code == 503 and "no catalog entry qualifies" in r.text
    # a model a plain route reaches without an entry is listed, unlisted, never picked
    gw.route("plain", {"provider": "fake", "model": "model-undescribed"})
    listed = {e["name"]: e for e in gw.admin.get("/api/registry/catalog").json()}
    assert listed["fake:model-undescribed"]["unlisted"] is True
    assert listed["small-tools"]["unlisted"] is False
    assert "model-undescribed" not in gw.admin.get("/api/registry/catalog/export").text
    # the route's target is checked when it is saved
    body["target"] = {"kind": "catalog", "query": {"min_context": "lots"}}
    r = gw.admin.put("/api/gateway/routes/cheap-tools", json=body)
    assert r.status_code == 400 and "target.query.min_context" in r.text
    body["target"] = {"kind": "telepathy"}
    r = gw.admin.put("/api/gateway/routes/cheap-tools", json=body)
    assert r.status_code == 400 and "target.kind" in r.text


def test_a_catalog_query_can_pick_a_builtin_model(gw: Env) -> None:
    body = {
        "name": "free-chat",
        "target": {"kind": "catalog", "query": {"type": "chat", "max_cost": 0.0}},
    }
    r = gw.admin.put("/api/gateway/routes/free-chat", json=body)
    assert r.status_code == 200, r.text
    dep = r.json()["deployments"][0]
    assert dep["source"] == "catalog:smollm2" and dep["provider"] == "local-llama"
