"""Evaluation runs through the API, against a scripted upstream on loopback (it echoes
the last user message: `echo: <text>`): per-item outputs and scores with aggregates and
intervals; calls governed and recorded as the actor's; prompt targets rendered per
item; failures browsed; cancel; resume after a restart without calling twice; runs
compared side by side with significance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Env, make_env
from tests.gateway.fake_upstream import FakeUpstream

CAPITALS = [
    ("France", "echo: France"),
    ("Spain", "echo: Spain"),
    ("Italy", "echo: Italy"),
    ("Peru", "echo: Peru"),
    ("Chile", "Santiago"),
    ("Japan", "Tokyo"),
]


def _dataset(env: Env, name: str = "capitals", pairs: Any = CAPITALS) -> None:
    items = [{"inputs": {"input": q}, "expected": e} for q, e in pairs]
    r = env.admin.post("/api/datasets", json={"name": name, "items": items})
    assert r.status_code == 201, r.text


def _start(env: Env, **body: Any) -> dict[str, Any]:
    payload = {
        "target": {"kind": "route", "ref": "support"},
        "dataset": "capitals",
        "scorers": [{"name": "exact_match"}, {"name": "contains"}],
        **body,
    }
    r = env.admin.post("/api/evals/runs", json=payload)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued"
    return r.json()  # type: ignore[no-any-return]  # JSON


def _wait(env: Env, run_id: str, until: tuple[str, ...] = ("completed",)) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = env.admin.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] in until:
            return run  # type: ignore[no-any-return]  # JSON
        assert run["status"] in ("queued", "running"), run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is still {run['status']}")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support")
        _dataset(e)
        yield e


def test_a_run_scores_every_item_with_aggregates_and_intervals(env: Env) -> None:
    run = _wait(env, _start(env, concurrency=3, name="baseline")["id"])
    assert (run["total"], run["done"], run["errors"]) == (6, 6, 0)
    assert run["name"] == "baseline" and run["dataset_version"] == 1
    scores = run["aggregates"]["scores"]
    exact = scores["exact_match"]
    assert exact["mean"] == pytest.approx(4 / 6) and exact["n"] == 6
    assert 0 <= exact["ci_low"] < 4 / 6 < exact["ci_high"] <= 1
    assert scores["contains"]["mean"] == pytest.approx(4 / 6)
    agg = run["aggregates"]
    assert (
        agg["latency_ms"]["p50"] is not None
        and agg["latency_ms"]["p95"] >= agg["latency_ms"]["p50"]
    )
    assert agg["input_tokens"] > 0 and agg["output_tokens"] > 0

    results = env.admin.get(f"/api/evals/runs/{run['id']}/results").json()["items"]
    assert [r["inputs"]["input"] for r in results] == [q for q, _ in CAPITALS]
    assert [r["output"] for r in results] == [f"echo: {q}" for q, _ in CAPITALS]
    assert [r["scores"]["exact_match"]["value"] for r in results] == [1, 1, 1, 1, 0, 0]
    assert all(r["trace_id"] and r["latency_ms"] is not None for r in results)

    # the calls went through the gateway as the actor, recorded like any other
    records = env.records(route="support")
    assert len(records) == 6
    assert {rec["key_id"] for rec in records} == {records[0]["key_id"]}

    # failures to browse
    failed = env.admin.get(
        f"/api/evals/runs/{run['id']}/results",
        params={"failed": "true", "scorer": "exact_match", "below": 1},
    ).json()["items"]
    assert [r["inputs"]["input"] for r in failed] == ["Chile", "Japan"]
    page = env.admin.get(f"/api/evals/runs/{run['id']}/results", params={"limit": 4}).json()
    rest = env.admin.get(
        f"/api/evals/runs/{run['id']}/results", params={"cursor": page["next_cursor"]}
    ).json()
    assert len(page["items"]) == 4 and len(rest["items"]) == 2 and rest["next_cursor"] is None

    listed = env.admin.get("/api/evals/runs", params={"dataset": "capitals"}).json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert "actor" not in listed[0]["target"]


def test_a_failing_item_is_recorded_and_the_run_goes_on(env: Env) -> None:
    env.upstream.fail(400, times=1, message="bad request from upstream")
    run = _wait(env, _start(env, concurrency=1)["id"])
    assert run["status"] == "completed" and run["errors"] == 1
    assert run["aggregates"]["scores"]["exact_match"]["n"] == 5
    failed = env.admin.get(f"/api/evals/runs/{run['id']}/results", params={"failed": "true"})
    errors = [r for r in failed.json()["items"] if r["error"]]
    assert len(errors) == 1 and errors[0]["error"].startswith("4")


def test_bad_runs_are_refused_naming_the_field(env: Env) -> None:
    base: dict[str, Any] = {
        "target": {"kind": "route", "ref": "support"},
        "dataset": "capitals",
        "scorers": [{"name": "exact_match"}],
    }
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"scorers": [{"name": "nope"}]}, 400, "no scorer named 'nope'"),
        ({"scorers": [{"name": "regex", "config": {"pattern": "("}}]}, 400, "scorers.0.config"),
        ({"scorers": [{"name": "exact_match", "config": {"bogus": 1}}]}, 400, "scorers.0.config"),
        ({"scorers": []}, 422, "scorers"),
        ({"target": {"kind": "route", "ref": "missing"}}, 400, "target.ref"),
        ({"target": {"kind": "prompt", "ref": "missing@1"}}, 400, "target.ref"),
        ({"target": {"kind": "release", "ref": "app@production"}}, 422, "release"),
        ({"dataset": "nope"}, 404, "nope"),
        ({"dataset_version": 9}, 404, "version 9"),
        ({"params": {"messages": []}}, 422, "params"),
        ({"concurrency": 0}, 422, "concurrency"),
        (
            {"scorers": [{"name": "exact_match"}, {"name": "exact_match"}]},
            422,
            "give one a label",
        ),
    ]
    for change, status, named in cases:
        r = env.admin.post("/api/evals/runs", json={**base, **change})
        assert r.status_code == status, (change, r.text)
        assert named in r.text, (named, r.text)
    assert env.admin.get("/api/evals/runs").json() == []
    viewer, _ = env.key("viewer", role="viewer")
    r = env.admin.post("/api/evals/runs", json=base, headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403


def test_a_prompt_target_renders_each_item(env: Env) -> None:
    prompt = {
        "template": {
            "type": "chat",
            "messages": [{"role": "user", "content": "Capital of {{ input }}?"}],
        },
        "variables": {"input": {"type": "string"}},
        "model": "support",
        "message": "v1",
    }
    assert env.admin.post("/api/registry/prompts/capital/versions", json=prompt).status_code == 201
    run = _wait(
        env,
        _start(env, target={"kind": "prompt", "ref": "capital@1"}, params={"temperature": 0})["id"],
    )
    results = env.admin.get(f"/api/evals/runs/{run['id']}/results").json()["items"]
    assert results[0]["output"] == "echo: Capital of France?"
    assert run["aggregates"]["scores"]["exact_match"]["mean"] == 0
    assert {rec["prompt"] for rec in env.records(route="support")} == {"capital@v1"}
    assert env.upstream.requests[-1]["temperature"] == 0

    # compared with the route on the same items: the prompt loses on the four it changed
    base = _wait(env, _start(env)["id"])
    r = env.admin.get("/api/evals/compare", params=[("runs", base["id"]), ("runs", run["id"])])
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert cmp["baseline"] == base["id"] and cmp["scorers"] == ["exact_match", "contains"]
    exact = cmp["against"][0]["scores"]["exact_match"]
    assert (exact["wins"], exact["losses"], exact["ties"]) == (0, 4, 2)
    assert exact["diff"] == pytest.approx(-4 / 6)
    assert exact["p_sign"] == pytest.approx(0.125)  # 4 losses, 0 wins: 2 * 0.5**4
    assert exact["ci_high"] < 0
    assert len(cmp["items"]) == 6 and cmp["items"][0]["runs"][1]["output"].startswith("echo: Cap")
    assert [r["id"] for r in cmp["runs"]] == [base["id"], run["id"]]

    bad = env.admin.get("/api/evals/compare", params=[("runs", base["id"])])
    assert bad.status_code == 422


def test_a_run_is_cancelled_and_keeps_what_it_finished(env: Env) -> None:
    for _ in range(6):
        env.upstream.then("slow", delay=0.4)
    run = _start(env, concurrency=1)
    deadline = time.monotonic() + 30
    while env.admin.get(f"/api/evals/runs/{run['id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = env.admin.post(f"/api/evals/runs/{run['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    time.sleep(1.0)
    after = env.admin.get(f"/api/evals/runs/{run['id']}").json()
    assert after["status"] == "cancelled" and after["done"] < 6
    assert env.admin.post(f"/api/evals/runs/{run['id']}/cancel").status_code == 409
    assert env.admin.delete(f"/api/evals/runs/{run['id']}").status_code == 204
    assert env.admin.get(f"/api/evals/runs/{run['id']}").status_code == 404


def test_a_run_resumes_after_a_restart_without_calling_twice(tmp_path: Path) -> None:
    upstream = FakeUpstream().start()
    try:
        pairs = [(f"q{i}", f"echo: q{i}") for i in range(24)]
        for _ in range(24):
            upstream.then("slow", delay=0.15)
        first = make_env(tmp_path, upstream=upstream)
        env = next(first)
        env.provider()
        env.route("support")
        _dataset(env, "many", pairs)
        run = _start(env, dataset="many", concurrency=1, scorers=[{"name": "exact_match"}])
        deadline = time.monotonic() + 30
        while env.admin.get(f"/api/evals/runs/{run['id']}").json()["done"] < 8:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.close()  # the server stops mid-run

        calls_before = len(upstream.requests)
        assert calls_before < 24
        for env in make_env(tmp_path, upstream=upstream):
            done = _wait(env, run["id"])
            assert (done["done"], done["errors"]) == (24, 0)
            assert done["aggregates"]["scores"]["exact_match"]["mean"] == 1
            results = env.admin.get(f"/api/evals/runs/{run['id']}/results", params={"limit": 500})
            assert len(results.json()["items"]) == 24
        # each item was generated once, though the run spanned two servers (at most the
        # one call in flight at the stop, whose answer was never stored, is made again)
        asked = [r["messages"][-1]["content"] for r in upstream.requests]
        assert sorted(set(asked)) == sorted(q for q, _ in pairs)
        assert len(asked) <= 25, len(asked)
    finally:
        upstream.stop()


def test_a_run_whose_worker_died_is_resumed_when_its_lease_expires(env: Env) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from shipyard.evaluation.tables import RunRow
    from shipyard.store import utcnow

    for _ in range(6):
        env.upstream.then("slow", delay=0.3)
    run = _start(env, concurrency=1)
    deadline = time.monotonic() + 30
    while env.admin.get(f"/api/evals/runs/{run['id']}").json()["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # as if its worker died (a kill -9): another worker id holds a lease about to expire
    platform = env.app.state.platform
    with platform.db.transaction() as s:
        s.execute(
            update(RunRow)
            .where(RunRow.id == run["id"])
            .values(worker="wk_dead", lease_until=utcnow() + timedelta(seconds=1))
        )
    done = _wait(env, run["id"])
    assert (done["done"], done["errors"]) == (6, 0)
    assert done["aggregates"]["scores"]["exact_match"]["mean"] == pytest.approx(4 / 6)
    asked = [r["messages"][-1]["content"] for r in env.upstream.requests]
    assert sorted(set(asked)) == sorted(q for q, _ in CAPITALS) and len(asked) <= 7


def test_a_plugin_scorer_returning_nonsense_is_stored_as_unscored() -> None:
    from shipyard.evaluation.runner import finite
    from shipyard.plugins import Score

    assert finite(Score(0.5, "ok")) == Score(0.5, "ok")
    assert finite(Score(float("nan"), "")).value is None
    assert finite(Score(float("inf"), "")).reason == "the scorer returned inf"
    assert finite(Score("high", "")).value is None  # type: ignore[arg-type]  # a bad plugin
    assert finite(object()).value is None
