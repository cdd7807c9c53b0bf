"""An evaluation run against the local model, offline: generation, an LLM judge and
embedding similarity all through the gateway's in-process calls (SmolLM2 through
llama.cpp, all-MiniLM-L6-v2 through sentence-transformers), recorded as the run's actor;
the run then fills the catalog entry's benchmark."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import Env, make_env

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # one llama.cpp thread: the test suite must not oversubscribe the machine
    yield from make_env(tmp_path_factory.mktemp("judge"), local_threads=1)


def test_a_judge_and_embeddings_run_through_the_gateway_on_the_local_models(local: Env) -> None:
    items = [
        {"inputs": {"input": "Say hello politely."}, "expected": "Hello! How can I help you?"},
        {"inputs": {"input": "What is 2 + 2?"}, "expected": "2 + 2 is 4."},
    ]
    assert (
        local.admin.post("/api/datasets", json={"name": "tiny", "items": items}).status_code == 201
    )
    rubric = (
        "Rate how well the answer responds to the question, from 1 (not at all) to 5 (perfectly)."
    )
    r = local.admin.post(
        "/api/evals/runs",
        json={
            "target": {"kind": "route", "ref": "smollm2"},
            "dataset": "tiny",
            "params": {"max_tokens": 24, "temperature": 0},
            "concurrency": 1,
            "scorers": [
                {
                    "name": "llm_judge",
                    "config": {"rubric": rubric, "rubric_version": "v1", "max_tokens": 48},
                },
                {"name": "embedding_similarity"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while (run := local.admin.get(f"/api/evals/runs/{run_id}").json())["status"] != "completed":
        assert run["status"] in ("queued", "running"), run
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
    assert (run["done"], run["errors"]) == (2, 0)

    results = local.admin.get(f"/api/evals/runs/{run_id}/results").json()["items"]
    for item in results:
        assert item["output"] and item["output_tokens"] > 0
        judged = item["scores"]["llm_judge"]
        assert judged["reason"], judged  # a score with its reason, or why there is none
        assert judged["value"] is None or 0 <= judged["value"] <= 1  # the 1..5 scale, normalised
        similarity = item["scores"]["embedding_similarity"]["value"]
        assert similarity is not None and -1 <= similarity <= 1

    # generation and judging were gateway calls on smollm2, embeddings on MiniLM, all
    # recorded as the key that started the run
    chats = local.records(route="smollm2")
    assert len(chats) >= 4  # 2 generations + 2 judgements
    embeds = local.records(route="all-minilm-l6-v2")
    assert embeds and {rec["key_id"] for rec in chats + embeds} == {chats[0]["key_id"]}

    entry = "models:\n  - name: smollm2-local\n    type: chat\n    capabilities: [chat]\n"
    r = local.admin.post(
        "/api/registry/catalog/import",
        content=entry.encode(),
        headers={"content-type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    r = local.admin.post(
        f"/api/evals/runs/{run_id}/benchmark",
        json={"catalog": "smollm2-local", "scorer": "embedding_similarity"},
    )
    assert r.status_code == 200, r.text
    benchmarks = r.json()["benchmarks"]
    mean = run["aggregates"]["scores"]["embedding_similarity"]["mean"]
    assert benchmarks["accuracy"]["tiny@1"] == pytest.approx(mean)
    assert benchmarks["latency_ms"] == pytest.approx(run["aggregates"]["latency_ms"]["p50"])
    bad = local.admin.post(
        f"/api/evals/runs/{run_id}/benchmark", json={"catalog": "smollm2-local", "scorer": "nope"}
    )
    assert bad.status_code == 400 and "nope" in bad.text
