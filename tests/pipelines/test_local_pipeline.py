"""A pipeline on the local model, offline: retrieve from a knowledge base embedded by
MiniLM, answer with SmolLM2 (llama.cpp), called as `pipeline:...` through the `openai`
SDK (streamed), its trace tree, and an evaluation run on it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from tests.gateway.conftest import Env, make_env
from tests.retrieval.support import wait_indexed

pytestmark = pytest.mark.local_model

SPEC = {
    "inputs": {"question": {"type": "string"}},
    "steps": [
        {"id": "search", "type": "retrieve", "knowledge_base": "facts",
         "query": "$inputs.question", "k": 1},
        {"id": "answer", "type": "model", "route": "smollm2",
         "messages": [
             {"role": "system", "content": "Answer in one short sentence using this fact."},
             {"role": "system", "content": "$steps.search.text"},
             {"role": "user", "content": "$inputs.question"}],
         "params": {"max_tokens": 24, "temperature": 0, "seed": 1}},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # one llama.cpp thread: the test suite must not oversubscribe the machine
    yield from make_env(tmp_path_factory.mktemp("local-pipe"), local_threads=1)


def test_a_pipeline_on_the_local_model_streams_traces_and_evaluates(local: Env) -> None:
    env = local
    assert env.admin.post("/api/knowledge-bases", json={"name": "facts"}).status_code == 201
    docs = [
        {"name": "paris.txt", "text": "The capital of France is Paris."},
        {"name": "rome.txt", "text": "The capital of Italy is Rome."},
    ]
    r = env.admin.post("/api/knowledge-bases/facts/documents", json={"documents": docs})
    assert wait_indexed(env.admin, "facts", r.json()["ingestion"]["id"])["status"] == "done"
    r = env.admin.post("/api/pipelines/capitals/versions", json={"spec": SPEC})
    assert r.status_code == 201, r.text

    key, _ = env.key("local-pipe", role="app")
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="pipeline:capitals",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip()

    # the trace: the pipeline's root, its steps, the llama.cpp call under the model step
    env.app.state.platform.tracing.flush()
    traces = env.admin.get("/api/tracing/traces", params={"limit": 20}).json()["data"]
    root_trace = next(t for t in traces if t["name"].startswith("pipeline capitals"))
    spans = env.admin.get(f"/api/tracing/traces/{root_trace['trace_id']}/spans").json()["data"]
    by_name = {s["name"]: s for s in spans}
    model_step = by_name["model answer"]
    call = next(s for s in spans if s["route"] == "smollm2")
    assert call["parent_id"] == model_step["span_id"] and call["output_tokens"] > 0
    assert by_name["retrieve search"]["parent_id"] == by_name["pipeline capitals@v1"]["span_id"]

    items = [
        {"inputs": {"question": "What is the capital of Italy?"}, "expected": ["rome.txt"]},
        {"inputs": {"question": "What is the capital of France?"}, "expected": ["paris.txt"]},
    ]
    assert env.admin.post("/api/datasets", json={"name": "caps", "items": items}).status_code == 201
    r = env.admin.post(
        "/api/evals/runs",
        json={"target": {"kind": "pipeline", "ref": "capitals"}, "dataset": "caps",
              "concurrency": 1, "scorers": [{"name": "recall_at_k", "config": {"k": 1}}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    run_id, deadline = r.json()["id"], time.monotonic() + 300
    while (run := env.admin.get(f"/api/evals/runs/{run_id}").json())["status"] != "completed":
        assert run["status"] in ("queued", "running") and time.monotonic() < deadline, run
        time.sleep(0.5)
    results = env.admin.get(f"/api/evals/runs/{run_id}/results").json()["items"]
    assert [i["scores"]["recall_at_k"]["value"] for i in results] == [1.0, 1.0]
    assert all(i["output"] and i["output_tokens"] > 0 for i in results)
