"""Retention per workspace: raw spans older than `retention_days` are deleted, the
roll-ups the metrics read are kept; settings changed elsewhere reach the ingest path
without a database read per request."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.tracing.spans import MetricsQuery, TraceQuery
from tests.gateway.conftest import Env, make_env

DAY_NS = 86_400 * 10**9


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _span(trace_id: str, start_ns: int) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": os.urandom(8).hex(),
        "name": "chat",
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + 250_000_000),
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
        ],
    }


def test_retention_deletes_old_spans_and_keeps_rollups(env: Env) -> None:
    tracing = env.app.state.platform.tracing
    ws = env.admin.get("/api/me").json()["workspace"]["id"]
    now = time.time_ns()
    old, new = os.urandom(16).hex(), os.urandom(16).hex()
    body = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [_span(old, now - 3 * DAY_NS), _span(new, now)]}]}
        ]
    }
    assert env.admin.post("/v1/traces", json=body).status_code == 200
    tracing.flush()
    window = MetricsQuery(since_ns=now - 4 * DAY_NS, until_ns=now + DAY_NS, bucket_seconds=86400)
    before = tracing.store.metrics(ws, window)
    assert sum(p.requests for p in before) == 2

    # no retention configured: nothing is deleted
    assert tracing.apply_retention() == 0
    r = env.admin.put("/api/tracing/settings", json={"retention_days": 1, "detectors": ["email"]})
    assert r.status_code == 200, r.text
    assert tracing.config(ws).retention_days == 1  # reloaded in memory at once

    assert tracing.apply_retention() == 1
    kept = {t.trace_id for t in tracing.store.traces(ws, TraceQuery()).items}
    assert kept == {new}
    assert (
        tracing.store.span(ws, old, body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"])
        is None
    )
    after = tracing.store.metrics(ws, window)
    assert sum(p.requests for p in after) == 2  # the roll-ups outlive the raw spans
    assert sum(p.input_tokens for p in after) == 200
