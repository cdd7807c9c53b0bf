"""Feedback through the API: end users (app keys) add it and cannot read it or the
traces; people read it on the trace, with the trace's route, model and prompt version;
bad input is named and stores nothing; metrics over time; alert rules take them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Env, make_env


def _chat(env: Env, key: str, text: str = "hi") -> str:
    """A gateway call; its trace id."""
    r = httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "support", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-shipyard-trace-id"]


def _stored(env: Env) -> None:
    """Spans and feedback written, and the trace fields copied onto the feedback."""
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()
    services["feedback"].resolve_pending()


@pytest.fixture
def app_env(tmp_path: Path) -> Iterator[tuple[Env, str]]:
    for env in make_env(tmp_path):
        env.provider()
        env.route("support")
        key, _ = env.key("widget", role="app")
        yield env, key


def _post(env: Env, key: str, body: Any, path: str = "/api/feedback") -> httpx.Response:
    return httpx.post(
        env.url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
    )


def test_an_app_key_adds_feedback_but_reads_neither_it_nor_traces(app_env: tuple[Env, str]) -> None:
    env, key = app_env
    trace_id = _chat(env, key)
    r = _post(
        env,
        key,
        {
            "trace_id": trace_id,
            "thumbs": "down",
            "comment": "wrong answer, mail me at jane.doe@example.com",
            "correction": "Hello! How can I help?",
            "end_user": "customer-42",
        },
    )
    assert r.status_code == 202, r.text
    (feedback_id,) = r.json()["ids"]
    for path in (
        "/api/feedback",
        f"/api/feedback/{feedback_id}",
        "/api/tracing/traces",
        f"/api/tracing/traces/{trace_id}",
    ):
        denied = httpx.get(env.url + path, headers={"Authorization": f"Bearer {key}"})
        assert denied.status_code == 403, (path, denied.text)

    _stored(env)
    got = env.admin.get("/api/feedback", params={"trace_id": trace_id})
    assert got.status_code == 200, got.text
    (item,) = got.json()["items"]
    assert item["id"] == feedback_id
    assert item["thumbs"] == "down"
    assert item["source"] == "end_user"
    assert item["author"].startswith("key:widget")
    assert item["correction"] == "Hello! How can I help?"
    assert "jane.doe@example.com" not in item["comment"]  # masked before storage
    assert item["end_user"] == "customer-42"
    assert item["route"] == "support"
    assert item["model"] == "gpt-4o-mini"
    assert env.admin.get(f"/api/feedback/{feedback_id}").json()["id"] == feedback_id


def test_several_pieces_per_trace_each_with_author_and_source(app_env: tuple[Env, str]) -> None:
    env, key = app_env
    trace_id = _chat(env, key)
    assert _post(env, key, {"trace_id": trace_id, "thumbs": "up"}).status_code == 202
    r = env.admin.post(
        "/api/feedback",
        json={"trace_id": trace_id, "name": "accuracy", "score": 0.25, "label": "partial"},
    )
    assert r.status_code == 202, r.text
    r = env.admin.post(
        "/api/feedback", json={"trace_id": trace_id, "comment": "via the API", "source": "api"}
    )
    assert r.status_code == 202, r.text
    _stored(env)
    items = env.admin.get("/api/feedback", params={"trace_id": trace_id}).json()["items"]
    assert sorted((i["source"], i["name"]) for i in items) == [
        ("api", "feedback"),
        ("end_user", "feedback"),
        ("reviewer", "accuracy"),
    ]
    reviewer = next(i for i in items if i["source"] == "reviewer")
    assert reviewer["author"].startswith("key:")
    assert reviewer["score"] == 0.25 and reviewer["label"] == "partial"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"trace_id": "0" * 32}, "at least one of"),
        ({"trace_id": "xyz", "thumbs": "up"}, "trace_id"),
        ({"trace_id": "0" * 32, "thumbs": "sideways"}, "thumbs"),
        ({"trace_id": "0" * 32, "score": "high"}, "score"),
        ({"trace_id": "0" * 32, "thumbs": "up", "colour": "red"}, "colour"),
        ({"trace_id": "0" * 32, "span_id": "12", "thumbs": "up"}, "span_id"),
        ({"trace_id": "0" * 32, "comment": "a\x00b"}, "comment"),
        ({"trace_id": "0" * 32, "correction": "x" * 100_001}, "correction"),
    ],
)
def test_bad_feedback_is_named_and_nothing_is_stored(
    app_env: tuple[Env, str], body: dict[str, Any], named: str
) -> None:
    env, key = app_env
    r = _post(env, key, body)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert named in r.text
    _stored(env)
    assert env.admin.get("/api/feedback").json()["items"] == []


def test_a_batch_is_all_or_nothing(app_env: tuple[Env, str]) -> None:
    env, key = app_env
    trace_id = _chat(env, key)
    good = {"trace_id": trace_id, "thumbs": "up"}
    r = _post(env, key, [good, {"trace_id": trace_id}], path="/api/feedback/batch")
    assert r.status_code in (400, 422), r.text
    assert "1" in r.text  # the second item is named
    r = _post(env, key, [good] * 1001, path="/api/feedback/batch")
    assert r.status_code in (400, 422), r.text
    _stored(env)
    assert env.admin.get("/api/feedback").json()["items"] == []
    r = _post(env, key, [good, good], path="/api/feedback/batch")
    assert r.status_code == 202 and len(r.json()["ids"]) == 2


def test_pages_newest_first_with_a_cursor(app_env: tuple[Env, str]) -> None:
    env, key = app_env
    trace_id = _chat(env, key)
    ids = _post(
        env, key, [{"trace_id": trace_id, "score": i} for i in range(5)], "/api/feedback/batch"
    ).json()["ids"]
    _stored(env)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = env.admin.get("/api/feedback", params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    bad = env.admin.get("/api/feedback", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and "cursor" in bad.text


def test_metrics_per_route_over_time(app_env: tuple[Env, str]) -> None:
    env, key = app_env
    env.route("other")
    support = _chat(env, key)
    r = httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "other", "messages": [{"role": "user", "content": "x"}]},
    )
    other = r.headers["x-shipyard-trace-id"]
    batch = [
        {"trace_id": support, "thumbs": "up", "score": 1.0},
        {"trace_id": support, "thumbs": "up", "score": 0.5},
        {"trace_id": support, "thumbs": "down"},
        {"trace_id": other, "thumbs": "down", "score": 0.0},
    ]
    assert _post(env, key, batch, "/api/feedback/batch").status_code == 202
    _stored(env)
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = env.admin.get("/api/feedback/metrics", params={"since": since, "group_by": "route"})
    assert r.status_code == 200, r.text
    by_route: dict[str, dict[str, Any]] = {}
    for point in r.json():
        group = by_route.setdefault(point["group"], {"count": 0, "up": 0, "down": 0})
        group["count"] += point["count"]
        group["up"] += point["thumbs_up"]
        group["down"] += point["thumbs_down"]
    assert by_route == {
        "support": {"count": 3, "up": 2, "down": 1},
        "other": {"count": 1, "up": 0, "down": 1},
    }
    r = env.admin.get("/api/feedback/metrics", params={"since": since, "route": "support"})
    (point,) = r.json()
    assert point["score_mean"] == pytest.approx(0.75)
    assert point["thumbs_up_rate"] == pytest.approx(2 / 3)
    assert env.admin.get("/api/feedback/metrics").status_code in (400, 422)  # since is needed
    naive = env.admin.get("/api/feedback/metrics", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code in (400, 422)


def test_alert_rules_take_feedback_metrics(app_env: tuple[Env, str]) -> None:
    env, key = app_env
    trace_id = _chat(env, key)
    rule = {
        "name": "unhappy users",
        "metric": "feedback_thumbs_up_rate",
        "route": "support",
        "window_seconds": 600,
        "comparator": "<",
        "threshold": 0.5,
        "targets": [{"url": "https://hooks.example.com/x"}],
    }
    r = env.admin.post("/api/tracing/alerts", json=rule)
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    bad = env.admin.post("/api/tracing/alerts", json={**rule, "name": "x", "metric": "nope"})
    assert bad.status_code == 400 and "feedback_thumbs_up_rate" in bad.text
    batch = [{"trace_id": trace_id, "thumbs": t} for t in ("down", "down", "up")]
    assert _post(env, key, batch, "/api/feedback/batch").status_code == 202
    _stored(env)
    platform = env.app.state.platform
    engine = platform.services["tracing"].alerts
    from shipyard.tracing.alert_tables import AlertRuleRow

    with platform.db.transaction() as s:
        row = s.get(AlertRuleRow, rule_id)
        assert row is not None
        s.expunge(row)
    value = engine.value(row, datetime.now(UTC) + timedelta(seconds=1))
    assert value == pytest.approx(1 / 3)
