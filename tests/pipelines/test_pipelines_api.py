"""Pipelines end to end on a real server: a spec pushed as YAML (retrieve from a knowledge
base embedded by the local MiniLM, render a registry prompt, call a route on a scripted
upstream), invoked through the API, through `/v1/chat/completions` with the `openai`
SDK (unary and streamed), traced a span per step under one root, evaluated with
retrieval metrics read from its spans; retries, failures named by step, and hostile
specs refused whole."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shipyard.identity import service as identity
from shipyard.identity.roles import Role
from tests.gateway.conftest import Env, make_env
from tests.retrieval.support import wait_indexed

SPEC = """
description: answers from the handbook
inputs:
  question: {type: string, max_length: 2000}
steps:
  - id: search
    type: retrieve
    knowledge_base: handbook
    query: $inputs.question
    k: 2
  - id: prompt
    type: prompt
    prompt: answer-prompt@latest
    variables: {question: $inputs.question, context: $steps.search.text}
  - id: answer
    type: model
    messages: $steps.prompt
    retry: {attempts: 1, backoff_s: 0}
output: answer
"""

DOCS = [
    {"name": "refunds.md", "text": "Refunds are paid back to the card within five days."},
    {"name": "shipping.md", "text": "Parcels ship from the Rotterdam warehouse every morning."},
    {"name": "pets.md", "text": "Cats purr and sleep most of the day on the sofa."},
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from make_env(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture(scope="module")
def ready(env: Env) -> Env:
    env.provider()
    env.route("fake-chat")
    r = env.admin.post(
        "/api/registry/prompts/answer-prompt/versions",
        json={
            "template": {
                "type": "chat",
                "messages": [
                    {"role": "system", "content": "Answer from: {{ context }}"},
                    {"role": "user", "content": "{{ question }}"},
                ],
            },
            "model": "fake-chat",
        },
    )
    assert r.status_code == 201, r.text
    assert env.admin.post("/api/knowledge-bases", json={"name": "handbook"}).status_code == 201
    r = env.admin.post("/api/knowledge-bases/handbook/documents", json={"documents": DOCS})
    assert r.status_code == 202, r.text
    assert wait_indexed(env.admin, "handbook", r.json()["ingestion"]["id"])["status"] == "done"
    r = env.admin.post("/api/pipelines/support/versions", json={"yaml": SPEC, "message": "v1"})
    assert r.status_code == 201, r.text
    r = env.admin.put("/api/registry/pipelines/support/aliases/canary", json={"version": 1})
    assert r.status_code == 200, r.text
    return env


def _spans(env: Env, trace_id: str) -> list[dict[str, Any]]:
    env.app.state.platform.tracing.flush()
    r = env.admin.get(f"/api/tracing/traces/{trace_id}/spans")
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def _attributes(env: Env, trace_id: str, span_id: str) -> dict[str, Any]:
    r = env.admin.get(f"/api/tracing/traces/{trace_id}/spans/{span_id}")
    assert r.status_code == 200, r.text
    return r.json()["attributes"]  # type: ignore[no-any-return]


def test_invoked_through_the_api_with_a_span_per_step(ready: Env) -> None:
    env = ready
    key, _ = env.key("pipe-app", role="app")
    before = len(env.upstream.requests)
    r = httpx.post(
        f"{env.url}/api/pipelines/support@canary/invoke",
        json={"inputs": {"question": "When are refunds paid?"}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["pipeline"] == "support@v1"
    assert done["output"] == "echo: When are refunds paid?"
    assert [s["step"] for s in done["steps"]] == ["search", "prompt", "answer"]
    assert all(s["status"] == "ok" and s["ms"] >= 0 for s in done["steps"])
    # the model saw the retrieved context through the rendered prompt
    sent = env.upstream.requests[before]["messages"]
    assert sent[0]["role"] == "system" and "Refunds are paid back" in sent[0]["content"]

    spans = _spans(env, done["trace_id"])
    by_name = {s["name"]: s for s in spans}
    root = by_name["pipeline support@v1"]
    assert root["parent_id"] == "" and root["status"] == "ok"
    for step in ("retrieve search", "prompt prompt", "model answer"):
        assert by_name[step]["parent_id"] == root["span_id"], step
    gateway = next(s for s in spans if s["service"] == "shipyard-gateway")
    assert gateway["parent_id"] == by_name["model answer"]["span_id"]
    assert gateway["route"] == "fake-chat"

    retrieval = _attributes(env, done["trace_id"], by_name["retrieve search"]["span_id"])
    assert retrieval["openinference.span.kind"] == "RETRIEVER"
    assert retrieval["retrieval.documents.0.document.id"] == "refunds.md"
    assert isinstance(retrieval["retrieval.documents.0.document.score"], float)
    assert "retrieval.documents.1.document.id" in retrieval
    assert "retrieval.documents.2.document.id" not in retrieval  # k: 2


def test_a_model_for_any_openai_client_unary_and_streamed(ready: Env) -> None:
    env = ready
    key, _ = env.key("pipe-openai", role="app")
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="pipeline:support@canary",
        messages=[{"role": "user", "content": "How do parcels ship?"}],
    )
    assert reply.choices[0].message.content == "echo: How do parcels ship?"
    assert reply.model == "pipeline:support@canary"
    assert reply.usage is not None and reply.usage.total_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="pipeline:support@1",
            messages=[{"role": "user", "content": "Where is the warehouse?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Where is the warehouse?"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    # the caller's traceparent is the pipeline's trace
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    raw = httpx.post(
        f"{env.url}/v1/chat/completions",
        json={"model": "pipeline:support", "messages": [{"role": "user", "content": "hi"}]},
        headers={
            "Authorization": f"Bearer {key}",
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        },
        timeout=60,
    )
    assert raw.status_code == 200, raw.text
    spans = _spans(env, trace_id)
    root = next(s for s in spans if s["name"] == "pipeline support@v1")
    assert root["parent_id"] == "00f067aa0ba902b7"

    missing = client.with_options(max_retries=0)
    with pytest.raises(openai.NotFoundError):
        missing.chat.completions.create(
            model="pipeline:nope@canary", messages=[{"role": "user", "content": "x"}]
        )

    # listed beside the routes, as what a client may pass as `model`
    listed = {m.id: m for m in client.models.list()}
    assert {"fake-chat", "pipeline:support", "pipeline:support@canary"} <= set(listed)
    assert listed["pipeline:support@canary"].owned_by == "shipyard"
    assert client.models.retrieve("pipeline:support@canary").id == "pipeline:support@canary"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("pipeline:nope")
    # a key of another workspace sees none of this workspace's pipelines
    r = env.admin.post("/api/workspaces", json={"slug": "elsewhere-models"})
    assert r.status_code == 201, r.text
    with env.app.state.platform.db.transaction() as s:
        _, other = identity.create_key(
            s, actor=None, workspace_id=r.json()["id"], name="elsewhere", role=Role("app")
        )
    theirs = openai.OpenAI(base_url=f"{env.url}/v1", api_key=other, max_retries=0)
    assert not [m.id for m in theirs.models.list() if m.id.startswith("pipeline:")]
    with pytest.raises(openai.NotFoundError):
        theirs.models.retrieve("pipeline:support")


def test_a_failing_step_retries_then_fails_the_run_naming_the_step(ready: Env) -> None:
    env = ready
    env.upstream.fail(500, times=1)  # the retry succeeds (and the gateway's own retries)
    r = env.admin.post("/api/pipelines/support/invoke", json={"inputs": {"question": "again?"}})
    assert r.status_code == 200, r.text

    env.upstream.fail(400, times=4)  # a client error upstream: not retried
    r = env.admin.post("/api/pipelines/support/invoke", json={"inputs": {"question": "bad?"}})
    assert r.status_code in (400, 502), r.text
    assert "step 'answer' (model)" in r.json()["detail"]
    env.upstream.script.clear()

    # streamed: a step that fails before the first text is the reply's status, not an
    # error event in a 200 stream
    env.upstream.fail(400, times=4)
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=env.owner_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model="pipeline:support", messages=[{"role": "user", "content": "x"}], stream=True
        )
    assert failed.value.status_code in (400, 502) and "step 'answer'" in str(failed.value)
    env.upstream.script.clear()

    r = env.admin.post("/api/pipelines/support/invoke", json={"inputs": {}})
    assert r.status_code == 400 and r.json()["detail"].startswith("inputs.question")
    r = env.admin.post("/api/pipelines/support/invoke", json={"inputs": {"question": 3}})
    assert r.status_code == 400 and "must be string" in r.json()["detail"]
    r = env.admin.post("/api/pipelines/support/invoke", json={"inputs": {"x": "y"}})
    assert r.status_code == 400 and r.json()["detail"].startswith("inputs.x")
    r = env.admin.post("/api/pipelines/support@nope/invoke", json={"inputs": {}})
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        (  # a cycle through references
            {
                "steps": [
                    {"id": "a", "type": "model", "route": "fake-chat", "messages": "$steps.b"},
                    {"id": "b", "type": "model", "route": "fake-chat", "messages": "$steps.a"},
                ]
            },
            "a cycle",
        ),
        (
            {"steps": [{"id": "a", "type": "model", "route": "r", "messages": "$steps.zz"}]},
            "step 'a': $steps.zz names no step",
        ),
        (
            {"steps": [{"id": "a", "type": "teleport"}]},
            "step 'a': unknown type 'teleport'",
        ),
        (
            {
                "inputs": {"q": {"type": "string"}},
                "steps": [
                    {
                        "id": "s",
                        "type": "retrieve",
                        "knowledge_base": "handbook",
                        "query": "$inputs.q",
                    },
                    {
                        "id": "t",
                        "type": "retrieve",
                        "knowledge_base": "handbook",
                        "query": "$steps.s",
                    },
                ],
            },
            "step 't': query needs string, but $steps.s gives chunks (use $steps.s.text)",
        ),
        (
            {"steps": [{"id": "a", "type": "model", "route": "r", "messages": "$item"}]},
            "step 'a': reads $item, but no map runs it",
        ),
        (
            {"steps": [{"id": "a", "type": "model", "route": "r", "messages": "x", "bogus": 1}]},
            "step 'a' (model): bogus",
        ),
        (
            {"steps": [{"id": "a", "type": "tool", "tool": "no_such_tool"}]},
            "step 'a': tool: 'no_such_tool' is not a registered tool",
        ),
        (
            {
                "steps": [
                    {"id": "a", "type": "output", "value": 1},
                    {"id": "a", "type": "output", "value": 2},
                ]
            },
            "step 'a': a second step has this id",
        ),
    ],
)
def test_bad_specs_are_refused_naming_the_step(
    ready: Env, spec: dict[str, Any], names: str
) -> None:
    r = ready.admin.post("/api/pipelines/bad/versions", json={"spec": spec})
    assert r.status_code == 400, r.text
    assert names in r.json()["detail"], r.json()
    assert ready.admin.get("/api/registry/pipelines/bad").status_code == 404  # nothing written


def test_hostile_yaml_and_permissions(ready: Env) -> None:
    env = ready
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    r = env.admin.post("/api/pipelines/validate", json={"yaml": bomb})
    assert r.status_code == 400 and "aliases are not allowed" in r.json()["detail"]
    r = env.admin.post("/api/pipelines/validate", json={"yaml": "steps: [\n"})
    assert r.status_code == 400 and r.json()["detail"].startswith("yaml:")
    r = env.admin.post("/api/pipelines/validate", json={"yaml": "!!python/object:os.system {}"})
    assert r.status_code == 400
    for not_json in ("steps: [{id: a, type: output, value: 2024-01-01}]", "a: !!int xyz",
                     "a: !!set {x}", "{2024-01-01: x}"):  # fmt: skip
        r = env.admin.post("/api/pipelines/validate", json={"yaml": not_json})
        assert r.status_code == 400 and r.json()["detail"].startswith("yaml:"), r.text
    r = env.admin.post("/api/pipelines/validate", json={"yaml": SPEC, "spec": {"steps": []}})
    assert r.status_code == 400

    viewer, _ = env.key("pipe-viewer", role="viewer")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    r = httpx.post(f"{env.url}/api/pipelines/evil/versions", json={"yaml": SPEC},
                   headers=as_viewer)  # fmt: skip
    assert r.status_code == 403
    r = httpx.post(f"{env.url}/api/pipelines/support/invoke", json={"inputs": {"question": "q"}},
                   headers=as_viewer)  # fmt: skip
    assert r.status_code == 403
    assert httpx.get(f"{env.url}/api/pipelines").status_code == 401
    assert httpx.get(f"{env.url}/api/pipelines", headers=as_viewer).status_code == 200


def test_branch_map_tool_and_output_schema(ready: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env = ready
    plugins = env.app.state.platform.plugins
    plugins.names("shipyard.tools")
    monkeypatch.setitem(plugins._groups["shipyard.tools"], "shout", "tests.pipelines.tools:shout")
    spec = {
        "inputs": {"topic": {"type": "string"}, "words": {"type": "array"}},
        "steps": [
            {"id": "kind", "type": "tool", "tool": "shout", "args": {"text": "$inputs.topic"}},
            {"id": "pick", "type": "branch", "on": "$steps.kind.kind",
             "cases": {"LOUD": "each"}, "default": "quiet"},
            {"id": "each", "type": "map", "over": "$inputs.words", "step": "one",
             "concurrency": 2},
            {"id": "one", "type": "tool", "tool": "shout", "args": {"text": "$item"}},
            {"id": "quiet", "type": "output", "value": "shh"},
            {"id": "out", "type": "output",
             "value": {"picked": "$steps.pick", "topic": "$steps.kind.text"},
             "schema": {"type": "object", "required": ["picked", "topic"]}},
        ],
    }  # fmt: skip
    r = env.admin.post("/api/pipelines/fanout/versions", json={"spec": spec})
    assert r.status_code == 201, r.text
    r = env.admin.post(
        "/api/pipelines/fanout/invoke", json={"inputs": {"topic": "x", "words": ["a", "b", "c"]}}
    )
    assert r.status_code == 200, r.text
    done = r.json()
    picked = done["output"]["picked"]
    assert [p["text"] for p in picked] == ["A", "B", "C"]
    assert done["output"]["topic"] == "X"
    ran = [s["step"] for s in done["steps"]]
    assert "quiet" not in ran and ran.count("one") == 3  # only the case taken ran
    items = sorted(s["item"] for s in done["steps"] if s["step"] == "one")
    assert items == [0, 1, 2]

    # a schema the output misses fails the output step, named
    spec["steps"][-1]["schema"] = {"type": "object", "required": ["nope"]}
    assert env.admin.post("/api/pipelines/fanout/versions", json={"spec": spec}).status_code == 201
    r = env.admin.post("/api/pipelines/fanout/invoke", json={"inputs": {"topic": "x", "words": []}})
    assert r.status_code == 502 and "step 'out' (output)" in r.json()["detail"]

    r = env.admin.get("/api/pipelines/fanout/diff", params={"a": 1, "b": 2})
    assert r.status_code == 200
    assert any(line.startswith("+") and "nope" in line for line in r.json()["diff"])


def test_an_evaluation_run_on_a_pipeline_reads_retrieval_metrics_from_its_spans(
    ready: Env,
) -> None:
    env = ready
    items = [
        {"inputs": {"question": "When are refunds paid?"}, "expected": ["refunds.md"]},
        {"inputs": {"question": "Where do parcels ship from?"}, "expected": ["shipping.md"]},
    ]
    r = env.admin.post("/api/datasets", json={"name": "support-qa", "items": items})
    assert r.status_code == 201, r.text
    r = env.admin.post(
        "/api/evals/runs",
        json={
            "target": {"kind": "pipeline", "ref": "support@canary"},
            "dataset": "support-qa",
            "scorers": [{"name": "recall_at_k", "config": {"k": 1}}, {"name": "mrr"}],
        },
    )
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["subject"] == "pipeline:support@1"
    deadline = time.monotonic() + 120
    while (run := env.admin.get(f"/api/evals/runs/{run['id']}").json())["status"] != "completed":
        assert run["status"] in ("queued", "running"), run
        assert time.monotonic() < deadline
        time.sleep(0.2)
    results = env.admin.get(f"/api/evals/runs/{run['id']}/results").json()["items"]
    assert len(results) == 2
    for item in results:
        assert item["trace_id"] and item["output"].startswith("echo: ")
        assert item["scores"]["recall_at_k"]["value"] == 1.0, item
        assert item["scores"]["mrr"]["value"] == 1.0, item

    r = env.admin.post(
        "/api/evals/runs",
        json={"target": {"kind": "pipeline", "ref": "ghost"}, "dataset": "support-qa",
              "scorers": [{"name": "mrr"}]},
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["detail"].startswith("target.ref")


def test_sdk_builds_pushes_and_invokes(ready: Env, tmp_path: Path) -> None:
    from shipyard.sdk.client import Client
    from shipyard.sdk.pipelines import Pipeline

    p = (
        Pipeline(inputs={"question": "string"})
        .retrieve("search", knowledge_base="handbook", query="$inputs.question", k=1)
        .model("answer", route="fake-chat", messages="$steps.search.text", retry=1)
    )
    with Client(ready.url, ready.owner_key) as c:
        checked = c.pipelines.validate(p)
        assert [s.id for s in checked.steps] == ["search", "answer"]
        version = c.pipelines.push("sdk-built", p, message="from python")
        assert version.number == 1 and version.body["spec"]["steps"][1]["retry"] == {"attempts": 1}
        done = c.pipelines.invoke("sdk-built", question="cats?")
        assert done.output.startswith("echo: Cats purr")
        assert [s.step for s in done.steps] == ["search", "answer"]
        listed = {x.name: x for x in c.pipelines.list()}
        assert listed["sdk-built"].steps == 2 and listed["support"].aliases == {"canary": 1}
        c.registry.set_alias("sdk-built", "champion", 1, kind="pipeline")
        assert c.pipelines.invoke("sdk-built@champion", question="dogs?").pipeline == (
            "sdk-built@v1"
        )


def test_a_release_pins_a_pipeline_and_limits_govern_its_calls(ready: Env) -> None:
    env = ready
    assert env.admin.post("/api/registry/releases", json={"name": "app"}).status_code == 201
    r = env.admin.post(
        "/api/registry/releases/app/versions",
        json={"members": [{"kind": "pipeline", "name": "support", "version": 1}]},
    )
    assert r.status_code == 201, r.text
    r = env.admin.post(
        "/api/pipelines/app@1/support/invoke", json={"inputs": {"question": "pinned?"}}
    )
    assert r.status_code == 200 and r.json()["pipeline"] == "support@v1", r.text

    # each invocation makes two governed calls as the key: the query's embedding, the chat
    key, _ = env.key("pipe-limited", role="app", rpm=2)
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=key, max_retries=0)
    ask = {"model": "pipeline:support", "messages": [{"role": "user", "content": "one"}]}
    client.chat.completions.create(**ask)  # type: ignore[call-overload]
    with pytest.raises(openai.RateLimitError) as limited:  # the first call of the next is refused
        client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert "step 'search' (retrieve)" in str(limited.value)


def test_tools_past_their_timeout_hold_only_tool_threads(
    ready: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain-function tool that outlives its step's timeout keeps its thread (Python
    cannot stop one): a tool thread, not one of the server's own. With every tool thread
    held, a tool step waits for one within its timeout, and one that timed out waiting
    never runs; once they return, tools run again."""
    from shipyard.pipelines import steps
    from tests.pipelines import tools

    env = ready
    plugins = env.app.state.platform.plugins
    plugins.names("shipyard.tools")
    group = plugins._groups["shipyard.tools"]
    for name in ("hang", "count"):
        monkeypatch.setitem(group, name, f"tests.pipelines.tools:{name}")
    pool = steps.ToolThreads(2)
    monkeypatch.setattr(steps, "TOOL_THREADS", pool)
    for name, tool in (("stuck", "hang"), ("counted", "count")):
        spec = {"steps": [
            {"id": "t", "type": "tool", "tool": tool, "timeout_s": 0.3,
             "args": {"text": "hi"} if tool == "count" else {}},
            {"id": "out", "type": "output", "value": "$steps.t"}]}  # fmt: skip
        r = env.admin.post(f"/api/pipelines/{name}/versions", json={"spec": spec})
        assert r.status_code == 201, r.text
    tools.RELEASE.clear()
    tools.CALLS.clear()
    try:
        for _ in range(2):
            r = env.admin.post("/api/pipelines/stuck/invoke", json={"inputs": {}})
            assert r.status_code == 504 and "timed out" in r.json()["detail"], r.text
        assert pool.running == 2  # both still running, past their timeouts
        r = env.admin.post("/api/pipelines/counted/invoke", json={"inputs": {}})
        assert r.status_code == 504 and "timed out" in r.json()["detail"], r.text
        assert env.admin.get("/api/pipelines").status_code == 200  # the server is not stuck
    finally:
        tools.RELEASE.set()
    deadline = time.monotonic() + 10
    while pool.running:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    assert tools.CALLS == []  # the call that timed out waiting never ran
    r = env.admin.post("/api/pipelines/counted/invoke", json={"inputs": {}})
    assert r.status_code == 200 and r.json()["output"] == {"calls": 1, "text": "hi"}, r.text
