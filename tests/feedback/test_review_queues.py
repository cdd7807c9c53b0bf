"""Review queues through the API: rules route traces in (deterministic sampling, thumbs
down, a low score, a route, with route filters; each trace considered once), a reviewer
gets the next item assigned, reviews it (stored as feedback) or skips it, progress
moves; app keys and viewers cannot review, developers cannot manage; agreement between
two reviewers by hand; bad input is named and writes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from shipyard.feedback import queues, rules
from tests.conftest import as_key, key_for
from tests.gateway.conftest import Env, make_env


def _hex(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:32]


def test_sampling_is_deterministic_and_about_the_percent() -> None:
    ids = [_hex(i) for i in range(20_000)]
    ten = {t for t in ids if rules.sampled(t, 10)}
    five = {t for t in ids if rules.sampled(t, 5)}
    assert 0.09 < len(ten) / len(ids) < 0.11
    assert 0.04 < len(five) / len(ids) < 0.06
    assert five <= ten  # a smaller sample is a subset of a larger one
    assert ten == {t for t in ids if rules.sampled(t, 10)}  # the same every time
    assert all(rules.sampled(t, 100) for t in ids[:100])


def test_agreement_by_hand() -> None:
    a = queues.agreement_of(
        {
            "i1": [(1, 4.0), (1, 5.0)],
            "i2": [(1, 2.0), (-1, 2.0)],
            "i3": [(-1, 1.0), (-1, 4.0), (1, 0.0)],  # a third review is not compared
            "i4": [(1, None), (1, None)],
            "i5": [(1, 3.0)],  # one review: not compared
        }
    )
    # thumbs pairs: (1,1) (1,-1) (-1,-1) (1,1): p_o = 3/4; A up 3/4, B up 2/4:
    # p_e = 3/4*2/4 + 1/4*2/4 = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert (a.items, a.thumbs_pairs, a.score_pairs) == (4, 4, 3)
    assert a.thumbs_agreement == pytest.approx(0.75)
    assert a.kappa == pytest.approx(0.5)
    assert a.score_mad == pytest.approx((1 + 0 + 3) / 3)
    same = queues.agreement_of({"x": [(1, None), (1, None)]})
    assert same.thumbs_agreement == 1 and same.kappa is None  # p_e = 1: undefined


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for env in make_env(tmp_path):
        env.provider()
        env.route("support")
        env.route("sales")
        yield env


def _chat(env: Env, route: str, text: str = "hi") -> str:
    r = env.admin.post(
        "/v1/chat/completions",
        json={"model": route, "messages": [{"role": "user", "content": text}]},
    )
    assert r.status_code == 200, r.text
    return r.headers["x-shipyard-trace-id"]


def _queue(env: Env, name: str, rule_list: list[dict[str, Any]], **extra: Any) -> str:
    r = env.admin.post("/api/feedback/queues", json={"name": name, "rules": rule_list, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _items(env: Env, queue_id: str, **params: Any) -> list[dict[str, Any]]:
    r = env.admin.get(f"/api/feedback/queues/{queue_id}/items", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def _tick(env: Env) -> int:
    """Spans and feedback stored, trace fields copied (feedback rules), one tick of the
    trace and alert rules over the traces stored (they are: no settling time)."""
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()
    services["feedback"].resolve_pending()
    return int(services["feedback"].route_queues(now_ns=time.time_ns(), settle_ns=0))


def test_rules_route_traces_and_each_trace_is_considered_once(env: Env) -> None:
    down = _queue(env, "support-down", [{"kind": "thumbs_down", "route": "support"}])
    low = _queue(env, "low", [{"kind": "score_below", "threshold": 0.5}])
    support = _queue(env, "all-support", [{"kind": "route", "route": "support"}])
    half = _queue(env, "half-sales", [{"kind": "sample", "percent": 50, "route": "sales"}])
    s1, s2 = _chat(env, "support"), _chat(env, "support")
    sales = [_chat(env, "sales", f"q{i}") for i in range(6)]
    for body in (
        {"trace_id": s1, "thumbs": "down"},
        {"trace_id": sales[0], "thumbs": "down"},  # not the route this queue takes
        {"trace_id": sales[1], "score": 0.2},
        {"trace_id": s2, "score": 0.9},
    ):
        assert env.admin.post("/api/feedback", json=body).status_code == 202
    assert _tick(env) > 0

    assert [(i["trace_id"], i["reason"]) for i in _items(env, down)] == [(s1, "thumbs down")]
    assert [(i["trace_id"], i["reason"]) for i in _items(env, low)] == [
        (sales[1], "score 0.2 < 0.5")
    ]
    assert {i["trace_id"] for i in _items(env, support)} == {s1, s2}
    assert {i["reason"] for i in _items(env, support)} == {"route support"}
    expected = {t for t in sales if rules.sampled(t, 50)}
    assert {i["trace_id"] for i in _items(env, half)} == expected

    assert _tick(env) == 0  # nothing considered twice
    s3 = _chat(env, "support")
    _tick(env)
    assert {i["trace_id"] for i in _items(env, support)} == {s1, s2, s3}
    listed = env.admin.get("/api/feedback/queues").json()
    totals = {q["name"]: q["progress"]["total"] for q in listed}
    assert totals == {
        "all-support": 3,
        "half-sales": len(expected),
        "low": 1,
        "support-down": 1,
    }


def _as(env: Env, key: str) -> httpx.Client:
    return httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _seeded(env: Env, n: int, **extra: Any) -> tuple[str, list[str]]:
    queue_id = _queue(env, f"hand-{n}-{extra.get('reviews_wanted', 1)}", [], **extra)
    ids = [_hex(1000 + i) for i in range(n)]
    r = env.admin.post(f"/api/feedback/queues/{queue_id}/items", json={"trace_ids": ids})
    assert r.status_code == 200 and r.json() == {"added": n}, r.text
    items = _items(env, queue_id)
    return queue_id, [i["id"] for i in sorted(items, key=lambda i: ids.index(i["trace_id"]))]


def test_app_keys_and_viewers_cannot_review_and_developers_cannot_manage(env: Env) -> None:
    queue_id, (first, *_) = _seeded(env, 2)
    app_key, _ = env.key("widget", role="app")
    viewer_key, _ = env.key("watcher", role="viewer")
    dev_key, _ = env.key("dev", role="developer")
    base = f"/api/feedback/queues/{queue_id}"
    for key in (app_key, viewer_key):
        with _as(env, key) as c:
            assert c.post(f"{base}/next").status_code == 403
            assert c.post(f"{base}/items/{first}/review", json={"thumbs": "up"}).status_code == 403
            assert c.post(f"{base}/items/{first}/skip").status_code == 403
            assert c.get(f"{base}/items").status_code == 403
            assert c.get("/api/feedback/queues").status_code == 403
    with _as(env, dev_key) as c:
        assert c.post("/api/feedback/queues", json={"name": "mine"}).status_code == 403
        assert c.delete(base).status_code == 403
        assert c.put(f"{base}/items/{first}/assignment", json={"reviewer": None}).status_code == 403
        assert c.post(f"{base}/next").status_code == 200  # a developer reviews
    assert _items(env, queue_id, status="done") == []


def test_next_assigns_review_and_skip_move_progress(env: Env) -> None:
    queue_id, (a, b, c) = _seeded(env, 3)
    dev_key, _ = env.key("dev", role="developer")
    base = f"/api/feedback/queues/{queue_id}"
    got = env.admin.post(f"{base}/next").json()
    assert got["item"]["id"] == a and got["item"]["assigned_to"].startswith("key:")
    assert env.admin.post(f"{base}/next").json()["item"]["id"] == a  # the one I hold
    with _as(env, dev_key) as dev:
        mine = dev.post(f"{base}/next").json()["item"]
        assert mine["id"] == b  # not the one the owner holds
        dev_ref = mine["assigned_to"]
        held = dev.post(f"{base}/items/{a}/review", json={"thumbs": "up"})
        assert held.status_code == 409 and "assigned to" in held.text

        r = env.admin.post(
            f"{base}/items/{a}/review",
            json={"thumbs": "up", "score": 4, "label": "fine", "correction": "Hello!"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["item"]["status"] == "done" and r.json()["feedback_id"].startswith("fb_")
        again = env.admin.post(f"{base}/items/{a}/review", json={"thumbs": "down"})
        assert again.status_code == 409

        skipped = dev.post(f"{base}/items/{b}/skip")
        assert skipped.status_code == 200 and skipped.json()["item"]["status"] == "skipped"
    r = env.admin.put(f"{base}/items/{c}/assignment", json={"reviewer": dev_ref})
    assert r.status_code == 200 and r.json()["assigned_to"] == dev_ref
    assert env.admin.post(f"{base}/next").json()["item"] is None  # c is held by the dev
    progress = env.admin.get(base).json()["progress"]
    assert progress == {"total": 3, "pending": 1, "done": 1, "skipped": 1, "percent": 200 / 3}

    env.app.state.platform.services["feedback"].flush()
    items = env.admin.get("/api/feedback", params={"trace_id": _hex(1000)}).json()["items"]
    assert [(i["source"], i["thumbs"], i["score"], i["label"], i["correction"]) for i in items] == [
        ("reviewer", "up", 4.0, "fine", "Hello!")
    ]


def test_agreement_of_two_reviewers_through_the_api(env: Env) -> None:
    queue_id, ids = _seeded(env, 4, reviews_wanted=2)
    dev_key, _ = env.key("dev", role="developer")
    base = f"/api/feedback/queues/{queue_id}"
    first = [("up", 4), ("up", 2), ("down", 1), ("up", None)]
    second = [("up", 5), ("down", 2), ("down", 4), ("up", None)]
    with _as(env, dev_key) as dev:
        for client, answers in ((env.admin, first), (dev, second)):
            for item_id, (thumbs, score) in zip(ids, answers, strict=True):
                body: dict[str, Any] = {"thumbs": thumbs}
                if score is not None:
                    body["score"] = score
                r = client.post(f"{base}/items/{item_id}/review", json=body)
                assert r.status_code == 200, r.text
    assert {i["status"] for i in _items(env, queue_id)} == {"done"}
    got = env.admin.get(f"{base}/agreement").json()
    assert got["items"] == 4 and got["thumbs_pairs"] == 4 and got["score_pairs"] == 3
    assert got["thumbs_agreement"] == pytest.approx(0.75)
    assert got["kappa"] == pytest.approx(0.5)
    assert got["score_mad"] == pytest.approx(4 / 3)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"name": "x", "rules": [{"kind": "sample", "percent": 150}]}, "percent"),
        ({"name": "x", "rules": [{"kind": "sometimes"}]}, "kind"),
        ({"name": "x", "rules": [{"kind": "route"}]}, "route"),
        ({"name": "x", "rules": [{"kind": "score_below", "threshold": "low"}]}, "threshold"),
        ({"name": "x", "reviews_wanted": 9}, "reviews_wanted"),
        ({"name": "", "rules": []}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_queues_are_named_and_nothing_is_written(
    env: Env, body: dict[str, Any], named: str
) -> None:
    r = env.admin.post("/api/feedback/queues", json=body)
    assert r.status_code in (400, 422), r.text
    assert named in r.text
    assert env.admin.get("/api/feedback/queues").json() == []


def test_bad_reviews_are_named_and_mark_nothing(env: Env) -> None:
    queue_id, (a, *_) = _seeded(env, 2)
    base = f"/api/feedback/queues/{queue_id}"
    dup = env.admin.post("/api/feedback/queues", json={"name": "hand-2-1"})
    assert dup.status_code == 409 and "name" in dup.text
    for body, named in (
        ({}, "at least one of"),
        ({"score": "great"}, "score"),
        ({"thumbs": "sideways"}, "thumbs"),
        ({"thumbs": "up", "stars": 5}, "stars"),
        ({"comment": "a\x00b"}, "comment"),
    ):
        r = env.admin.post(f"{base}/items/{a}/review", json=body)
        assert r.status_code in (400, 422), (body, r.text)
        assert named in r.text, (body, r.text)
    assert env.admin.post(f"{base}/items/ri_nope/review", json={"thumbs": "up"}).status_code == 404
    assert env.admin.post("/api/feedback/queues/rq_nope/next").status_code == 404
    bad_cursor = env.admin.get(f"{base}/items", params={"cursor": "yesterday"})
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.text
    assert {i["status"] for i in _items(env, queue_id)} == {"pending"}
    env.app.state.platform.services["feedback"].flush()
    assert env.admin.get("/api/feedback").json()["items"] == []


def test_an_alert_firing_routes_the_traces_of_its_route_and_window(env: Env) -> None:
    queue_id = _queue(env, "on-alert", [{"kind": "alert", "rule": "support-busy", "limit": 10}])
    s1, s2 = _chat(env, "support"), _chat(env, "support")
    _chat(env, "sales")  # another route: not the rule's
    env.app.state.platform.services["tracing"].flush()
    assert _tick(env) == 0  # not fired yet
    body = {
        "name": "support-busy",  # a drift alert is the same: a rule on a drift metric
        "metric": "requests",
        "route": "support",
        "window_seconds": 300,
        "comparator": ">",
        "threshold": 1,
        "targets": [{"url": env.upstream.url + "/hook", "format": "json"}],
        "allow_internal": True,
    }
    assert env.admin.post("/api/tracing/alerts", json=body).status_code == 201
    engine = env.app.state.platform.tracing.alerts
    asyncio.run_coroutine_threadsafe(engine.evaluate(), engine.loop).result(60)
    assert _tick(env) == 2
    items = _items(env, queue_id)
    assert {i["trace_id"] for i in items} == {s1, s2}
    assert {i["reason"] for i in items} == {"alert 'support-busy' fired"}
    assert _tick(env) == 0  # that firing is routed once


def test_queue_sql_on_each_metadata_engine(client: TestClient) -> None:
    """Items, next (assignment), reviews by two reviewers, a skip, progress and agreement
    on SQLite and PostgreSQL."""
    r = client.post("/api/feedback/queues", json={"name": "pairs", "reviews_wanted": 2})
    assert r.status_code == 201, r.text
    base = f"/api/feedback/queues/{r.json()['id']}"
    ids = [_hex(i) for i in range(3)]
    assert client.post(f"{base}/items", json={"trace_ids": ids + ids[:1]}).json() == {"added": 3}
    assert client.post(f"{base}/items", json={"trace_ids": ids}).json() == {"added": 0}
    dev = as_key(key_for(client, "developer"))
    first = client.post(f"{base}/next").json()["item"]
    assert first["trace_id"] == ids[0]
    assert client.post(f"{base}/next", headers=dev).json()["item"]["trace_id"] == ids[1]
    for headers, thumbs in (({}, "up"), (dev, "down")):
        answer = {"thumbs": thumbs, "score": 3}
        r = client.post(f"{base}/items/{first['id']}/review", json=answer, headers=headers)
        assert r.status_code == 200, r.text
    items = client.get(f"{base}/items", params={"limit": 2}).json()
    assert [i["status"] for i in items["items"]] == ["done", "pending"]
    last = client.get(f"{base}/items", params={"cursor": items["next_cursor"]}).json()["items"]
    assert [i["trace_id"] for i in last] == ids[2:]
    skipped = client.post(f"{base}/items/{last[0]['id']}/skip", headers=dev)
    assert skipped.json()["item"]["status"] == "pending"  # another reviewer is wanted
    assert items["progress"] == {
        "total": 3,
        "pending": 2,
        "done": 1,
        "skipped": 0,
        "percent": 100 / 3,
    }
    got = client.get(f"{base}/agreement").json()
    assert got["thumbs_agreement"] == 0 and got["score_mad"] == 0 and got["items"] == 1
    assert client.delete(base).status_code == 204
    assert client.get(base).status_code == 404
