"""Online evaluation: a rule samples a route's live traces, scores them, and the scores
land as feedback on the traces (source `evaluation`), where metrics and alert rules take
them; each trace is scored once; sampling is deterministic."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shipyard.evaluation.online import sampled
from shipyard.tracing.alert_tables import AlertRuleRow
from tests.gateway.conftest import Env, make_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support")
        e.route("other")
        yield e


def _chat(env: Env, model: str, text: str) -> str:
    r = httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {env.owner_key}"},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-shipyard-trace-id"]


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    ids = [secrets.token_hex(16) for _ in range(4000)]
    share = sum(sampled(t, 0.25) for t in ids) / len(ids)
    assert 0.22 < share < 0.28
    assert [sampled(t, 0.25) for t in ids[:50]] == [sampled(t, 0.25) for t in ids[:50]]
    assert all(sampled(t, 1.0) for t in ids[:50])


def test_a_rule_scores_live_traces_as_feedback_metrics_and_alerts_take(env: Env) -> None:
    rule = {
        "name": "quality",
        "route": "support",
        "sample_rate": 1.0,
        "scorers": [{"name": "contains", "config": {"value": "echo"}}, {"name": "json_valid"}],
        "interval_s": 3600,
    }
    r = env.admin.post("/api/evals/online", json=rule)
    assert r.status_code == 201, r.text
    assert env.admin.post("/api/evals/online", json=rule).status_code == 409
    bad = env.admin.post(
        "/api/evals/online", json={**rule, "name": "x", "scorers": [{"name": "nope"}]}
    )
    assert bad.status_code == 400 and "nope" in bad.text

    traces = [_chat(env, "support", f"hello {i}") for i in range(3)]
    other = _chat(env, "other", "not this route")
    platform = env.app.state.platform
    platform.services["tracing"].flush()

    r = env.admin.post("/api/evals/online/quality/run")
    assert r.status_code == 200, r.text
    assert r.json()["scored"] == 3
    assert env.admin.post("/api/evals/online/quality/run").json()["scored"] == 0  # once each
    platform.services["feedback"].flush()
    platform.services["feedback"].resolve_pending()

    rows = env.admin.get("/api/feedback", params={"source": "evaluation", "limit": 50}).json()
    got = {(f["trace_id"], f["name"], f["score"]) for f in rows["items"]}
    assert got == {
        (t, n, v)
        for t in traces
        for n, v in (("quality/contains", 1.0), ("quality/json_valid", 0.0))
    }
    assert all(
        f["route"] == "support" and f["author"] == "evaluation:quality" for f in rows["items"]
    )
    assert other not in {f["trace_id"] for f in rows["items"]}
    on_trace = env.admin.get("/api/feedback", params={"trace_id": traces[0]}).json()["items"]
    assert len(on_trace) == 2  # shown with the trace's own feedback

    listed = env.admin.get("/api/evals/online").json()
    assert listed[0]["scored"] == 3 and listed[0]["last_error"] == ""

    # alert rules take the online score
    alert = {
        "name": "online quality",
        "metric": "online_score_mean",
        "route": "support",
        "window_seconds": 600,
        "comparator": "<",
        "threshold": 0.9,
        "targets": [{"url": "https://hooks.example.com/x"}],
    }
    r = env.admin.post("/api/tracing/alerts", json=alert)
    assert r.status_code == 201, r.text
    with platform.db.transaction() as s:
        row = s.get(AlertRuleRow, r.json()["id"])
        assert row is not None
        s.expunge(row)
    value = platform.services["tracing"].alerts.value(row, datetime.now(UTC) + timedelta(seconds=1))
    assert value == pytest.approx(0.5)

    # paused, it scores nothing; a viewer can read rules but not change them
    assert env.admin.patch("/api/evals/online/quality", json={"enabled": False}).status_code == 200
    viewer, _ = env.key("viewer", role="viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(f"{env.url}/api/evals/online", headers=headers).status_code == 200
    assert httpx.delete(f"{env.url}/api/evals/online/quality", headers=headers).status_code == 403
    assert env.admin.delete("/api/evals/online/quality").status_code == 204
    assert env.admin.get("/api/evals/online/quality").status_code == 404


def test_online_rules_from_the_sdk_and_the_cli(env: Env) -> None:
    from typer.testing import CliRunner

    from shipyard.cli.main import app
    from shipyard.sdk import Client

    auth = ["--url", env.url, "--key", env.owner_key]
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["eval", "online", "create", "polite", "--scorer", "contains", "--config",
         'contains={"value": "echo"}', "--route", "support", "--sample", "1", *auth],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "100% of support every 60 s" in out.output
    trace = _chat(env, "support", "hi")
    env.app.state.platform.services["tracing"].flush()
    with Client(env.url, env.owner_key) as c:
        assert [r["name"] for r in c.evals.online()] == ["polite"]
        assert c.evals.run_online("polite") == 1
        assert c.evals.update_online("polite", enabled=False)["enabled"] is False
    listed = runner.invoke(app, ["eval", "online", "list", *auth], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "polite" in listed.output and "no" in listed.output
    env.app.state.platform.services["feedback"].flush()
    got = env.admin.get("/api/feedback", params={"trace_id": trace}).json()["items"]
    assert [(f["name"], f["score"]) for f in got] == [("polite/contains", 1.0)]
    out = runner.invoke(app, ["eval", "online", "delete", "polite", *auth])
    assert out.exit_code == 0 and "deleted" in out.output
