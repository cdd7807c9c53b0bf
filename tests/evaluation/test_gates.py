"""Quality gates: an environment's policy names a dataset version and thresholds; a
registry promotion is refused with the failing numbers when the version's evaluation
run does not pass (or there is none), allowed when it does; and "not worse than
production with significance" compares the candidate's run with production's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.evaluation.test_runs_api import _dataset, _wait
from tests.gateway.conftest import Env, make_env


def _prompt(env: Env, content: str) -> int:
    body = {
        "template": {"type": "chat", "messages": [{"role": "user", "content": content}]},
        "variables": {"input": {"type": "string"}},
        "model": "support",
        "message": content,
    }
    r = env.admin.post("/api/registry/prompts/capital/versions", json=body)
    assert r.status_code == 201, r.text
    return r.json()["number"]  # type: ignore[no-any-return]  # JSON


def _run(env: Env, version: int) -> dict[str, Any]:
    r = env.admin.post(
        "/api/evals/runs",
        json={
            "target": {"kind": "prompt", "ref": f"capital@{version}"},
            "dataset": "capitals",
            "scorers": [{"name": "exact_match"}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["subject"] == f"prompt:capital@{version}"
    return _wait(env, r.json()["id"])


def _promote(env: Env, version: int) -> Any:
    return env.admin.post(
        "/api/registry/promotions",
        json={"kind": "prompt", "name": "capital", "version": version, "environment": "production"},
    )


def _policy(env: Env, gate: dict[str, Any]) -> Any:
    return env.admin.put(
        "/api/registry/policies/production",
        json={"four_eyes": False, "gates": {"evaluation": gate}},
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support")
        _dataset(e)
        yield e


def test_a_failing_gate_blocks_a_promotion_and_a_passing_one_allows_it(env: Env) -> None:
    good = _prompt(env, "{{ input }}")  # the upstream echoes: 4 of 6 match
    bad = _prompt(env, "Capital of {{ input }}?")  # matches none
    r = _policy(env, {"dataset": "capitals", "scorers": {"exact_match": {"min": 0.6}}})
    assert r.status_code == 200, r.text

    r = _promote(env, bad)
    assert r.status_code == 409, r.text
    assert "no completed evaluation run of prompt:capital@2 on capitals@1" in r.json()["detail"]

    _run(env, bad)
    r = _promote(env, bad)
    assert r.status_code == 409, r.text
    assert "exact_match 0.000 < 0.6" in r.json()["detail"]
    assert env.admin.get("/api/registry/prompts/capital").json()["aliases"] == {}

    _run(env, good)
    r = _promote(env, good)
    assert r.status_code == 201, r.text
    (gate,) = r.json()["gates"]
    assert gate["gate"] == "evaluation" and gate["passed"]
    assert "exact_match 0.667" in gate["detail"]
    assert env.admin.get("/api/registry/prompts/capital").json()["aliases"] == {"production": 1}

    # the registry's lineage of each version shows the runs that evaluated it
    graph = env.admin.get("/api/registry/prompts/capital/versions/1/lineage").json()
    runs = [n for n in graph["nodes"] if n["kind"] == "evaluation"]
    assert len(runs) == 1 and "completed, exact_match 0.667" in runs[0]["label"]
    assert {"from": "prompt:capital@1", "to": runs[0]["id"], "relation": "evaluated_by"} in graph[
        "edges"
    ]


def test_not_worse_than_production_with_significance(env: Env) -> None:
    good = _prompt(env, "{{ input }}")
    worse = _prompt(env, "Capital of {{ input }}?")
    assert _policy(env, {"dataset": "capitals"}).status_code == 200
    _run(env, good)
    assert _promote(env, good).status_code == 201

    gate = {
        "dataset": "capitals",
        "not_worse_than": {"scorer": "exact_match", "margin": 0.1},
        "latency": None,
    }
    bad_config = _policy(env, gate)
    assert bad_config.status_code == 400 and "gates.evaluation.latency" in bad_config.text
    gate.pop("latency")
    assert _policy(env, gate).status_code == 200
    _run(env, worse)
    r = _promote(env, worse)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "worse than production (prompt:capital@1) on exact_match by 0.667" in detail
    assert "4 losses / 0 wins" in detail

    # a margin as wide as the loss lets it through
    gate["not_worse_than"] = {"scorer": "exact_match", "margin": 0.9}
    assert _policy(env, gate).status_code == 200
    assert _promote(env, worse).status_code == 201


def test_gate_configuration_is_checked_when_the_policy_is_set(env: Env) -> None:
    for gate, named in [
        ({}, "gates.evaluation.dataset"),
        ({"dataset": "capitals", "scorers": {"x": {"min": "high"}}}, "gates.evaluation.scorers"),
        ({"dataset": "capitals", "max_error_rate": 2}, "gates.evaluation.max_error_rate"),
        ("capitals", "gates.evaluation"),
    ]:
        r = _policy(env, gate)  # type: ignore[arg-type]  # hostile input on purpose
        assert r.status_code == 400, (gate, r.text)
        assert named in r.text, (named, r.text)
