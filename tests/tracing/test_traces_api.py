"""The trace query API (/api/tracing/traces, sessions, metrics) and the LLM metrics on
/metrics, on the live app: spans sent over OTLP (JSON through httpx, protobuf through
the OpenTelemetry SDK's own exporter), then every filter, full text, pagination, a big
trace paged, sessions, metric roll-ups, who may read, workspace isolation, hostile
parameters, a gateway call joined to the caller's trace, and the Grafana dashboard's
queries against what /metrics exposes."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, generate_latest

from shipyard.identity import service as identity
from shipyard.identity.roles import Role
from shipyard.tracing.metrics import LLMMetrics
from shipyard.tracing.spans import Span, TraceQuery
from shipyard.tracing.store.rows import encode_cursor
from tests.conftest import _pg_database
from tests.gateway.conftest import Env, make_env

API = "/api/tracing"
T0 = 1_750_000_000_000_000_000  # 2025-06-15T15:06:40Z, Unix ns
SEC = 1_000_000_000
N = 12  # seeded traces
WINDOW = {"since": "2025-06-15T15:06:40Z", "until": "2025-06-15T15:07:40Z"}
DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "shipyard-tracing.json"


def tid(i: int) -> str:
    return f"{0xA11CE000 + i:032x}"


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def jspan(
    trace_id: str,
    span_id: str,
    name: str,
    start_ns: int,
    ms: float,
    parent: str = "",
    error: bool = False,
    **attrs: Any,
) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + int(ms * 1e6)),
        "attributes": [{"key": k.replace("__", "."), "value": _value(v)} for k, v in attrs.items()],
        "status": {"code": 2, "message": "failed"} if error else {"code": 1},
    }


def send_json(env: Env, key: str, service: str, spans: list[dict[str, Any]]) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}],
            }
        ]
    }
    r = httpx.post(
        f"{env.url}/v1/traces", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    assert "rejectedSpans" not in r.text or r.json()["partialSuccess"].get("rejectedSpans") in (
        None,
        0,
        "0",
    ), r.text


def seeded_trace(i: int) -> list[dict[str, Any]]:
    start = T0 + i * SEC
    root, child = f"{2 * i + 2:016x}", f"{2 * i + 3:016x}"
    return [
        jspan(
            tid(i),
            root,
            f"job-{i}",
            start,
            (i + 1) * 100,
            session__id=f"sess-{i % 4}",
            user__id=f"user-{i % 2}",
            input__value=f"question zebra{i} about the invoice",
            output__value=f"answer {i}",
            tier="gold" if i % 4 == 0 else "silver",
            retries=i,
        ),
        jspan(
            tid(i),
            child,
            "chat",
            start + 10_000_000,
            50,
            parent=root,
            error=i % 5 == 0,
            gen_ai__operation__name="chat",
            gen_ai__request__model="gpt-4o" if i % 2 else "claude-3",
            shipyard__route="alpha" if i % 3 == 0 else "beta",
            gen_ai__usage__input_tokens=10 * i,
            gen_ai__usage__output_tokens=5 * i,
            shipyard__cost_usd=0.001 * i,
            shipyard__ttft_ms=20.0,
        ),
    ]


def sdk_provider(env: Env, key: str, service: str) -> TracerProvider:
    """A TracerProvider of the test's own (never the global one), exporting protobuf."""
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(
        endpoint=f"{env.url}/v1/traces", headers={"authorization": f"Bearer {key}"}
    )
    tp.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
    return tp


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The live app with its trace store on SQLite, or on PostgreSQL (the metadata
    database's)."""
    url = None
    if request.param == "postgres":
        url = _pg_database(request.getfixturevalue("pg_server"))
    yield from make_env(tmp_path_factory.mktemp("traces-api"), database_url=url)


@pytest.fixture(scope="module")
def keys(env: Env) -> dict[str, tuple[str, str]]:
    return {role: env.key(name=f"{role}-key", role=role) for role in ("app", "viewer")}


@pytest.fixture(scope="module")
def seeded(env: Env, keys: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """N two-span traces in a fixed minute of 2025: 8 from the owner key (service svc-a),
    4 from an app key (svc-b); and a big trace through the SDK exporter (protobuf)."""
    app_key, app_id = keys["app"]
    send_json(env, env.owner_key, "svc-a", [s for i in range(8) for s in seeded_trace(i)])
    send_json(env, app_key, "svc-b", [s for i in range(8, N) for s in seeded_trace(i)])
    tp = sdk_provider(env, app_key, "big-batch")
    tracer = tp.get_tracer("tests")
    with tracer.start_as_current_span("big-root") as root:
        for n in range(1500):
            with tracer.start_as_current_span(f"step-{n}") as step:
                step.set_attribute("step", n)
    tp.shutdown()
    tracing(env).flush()
    big = f"{root.get_span_context().trace_id:032x}"
    return {"big": big, "big_root": f"{root.get_span_context().span_id:016x}", "app_id": app_id}


def tracing(env: Env) -> Any:
    return env.app.state.platform.tracing


def traces(env: Env, **params: Any) -> list[int]:
    """The seeded traces a filter finds (their i), in the order the API gives them."""
    r = env.admin.get(f"{API}/traces", params={**WINDOW, "limit": 200, **params})
    assert r.status_code == 200, r.text
    ids = [t["trace_id"] for t in r.json()["data"]]
    return [int(t, 16) - 0xA11CE000 for t in ids]


def desc(pred: Any) -> list[int]:
    return [i for i in reversed(range(N)) if pred(i)]


# --- the trace list --------------------------------------------------------------------


def test_the_list_shapes_each_trace(env: Env, seeded: dict[str, Any]) -> None:
    r = env.admin.get(f"{API}/traces", params={**WINDOW, "limit": 200})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    assert [t["trace_id"] for t in body["data"]] == [tid(i) for i in desc(lambda i: True)]
    t5 = next(t for t in body["data"] if t["trace_id"] == tid(5))
    assert t5["name"] == "job-5" and t5["span_count"] == 2 and t5["error_count"] == 1
    assert t5["status"] == "error" and t5["duration_ms"] == pytest.approx(600)
    assert t5["model"] == "gpt-4o" and t5["route"] == "beta" and t5["service"] == "svc-a"
    assert t5["session_id"] == "sess-1" and t5["user_id"] == "user-1"
    assert t5["input_tokens"] == 50 and t5["output_tokens"] == 25
    assert t5["cost_usd"] == pytest.approx(0.005)
    assert t5["start_ns"] == T0 + 5 * SEC and t5["started_at"].startswith("2025-06-15T15:06:45")
    assert "zebra5" in t5["input"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"route": "alpha"}, desc(lambda i: i % 3 == 0)),
        ({"model": "gpt-4o"}, desc(lambda i: i % 2 == 1)),
        ({"user_id": "user-1"}, desc(lambda i: i % 2 == 1)),
        ({"session_id": "sess-2"}, desc(lambda i: i % 4 == 2)),
        ({"service": "svc-b"}, desc(lambda i: i >= 8)),
        ({"status": "error"}, desc(lambda i: i % 5 == 0)),
        ({"status": "ok"}, desc(lambda i: i % 5 != 0)),
        ({"min_duration_ms": 500}, desc(lambda i: i >= 4)),
        ({"max_duration_ms": 300}, desc(lambda i: i <= 2)),
        ({"min_cost": 0.0045}, desc(lambda i: i >= 5)),
        ({"max_cost": 0.0025}, desc(lambda i: i <= 2)),
        ({"min_tokens": 100}, desc(lambda i: i >= 7)),
        ({"max_tokens": 30}, desc(lambda i: i <= 2)),
        ({"min_tokens": 30, "max_tokens": 60}, [4, 3, 2]),
        ({"attribute": "tier:gold"}, desc(lambda i: i % 4 == 0)),
        ({"attribute": "retries:3"}, [3]),
        ({"attribute": "tier:platinum"}, []),
        ({"q": "zebra7"}, [7]),
        ({"q": "INVOICE"}, desc(lambda i: True)),
        ({"q": "zebra7 invoice"}, [7]),
        ({"q": "nothing-like-this"}, []),
        ({"model": "gpt-4o", "route": "beta"}, [11, 7, 5, 1]),
        ({"since": "2025-06-15T15:06:43Z", "until": "2025-06-15T15:06:46Z"}, [5, 4, 3]),
        ({"since": "2025-06-15T17:06:43+02:00", "until": "2025-06-15T15:06:46Z"}, [5, 4, 3]),
        ({"since": "1750000003", "until": "1750000006"}, [5, 4, 3]),  # Unix seconds
    ],
)
def test_each_filter(
    env: Env, seeded: dict[str, Any], params: dict[str, Any], expected: list[int]
) -> None:
    assert traces(env, **params) == expected


def test_the_key_filter(env: Env, seeded: dict[str, Any]) -> None:
    assert traces(env, key_id=seeded["app_id"]) == desc(lambda i: i >= 8)
    assert traces(env, key_id="key_nobody") == []


def test_pages_follow_the_cursor(env: Env, seeded: dict[str, Any]) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {**WINDOW, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        r = env.admin.get(f"{API}/traces", params=params)
        assert r.status_code == 200, r.text
        seen += [t["trace_id"] for t in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and seen == [tid(i) for i in desc(lambda i: True)]
    # the cursor carries the position, the filters come with each request
    first = env.admin.get(f"{API}/traces", params={**WINDOW, "limit": 2, "model": "gpt-4o"})
    nxt = env.admin.get(
        f"{API}/traces",
        params={**WINDOW, "limit": 2, "model": "gpt-4o", "cursor": first.json()["next_cursor"]},
    )
    assert [t["trace_id"] for t in nxt.json()["data"]] == [tid(7), tid(5)]


# --- one trace -------------------------------------------------------------------------


def test_a_trace_with_its_span_tree(env: Env, seeded: dict[str, Any]) -> None:
    r = env.admin.get(f"{API}/traces/{tid(3)}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["trace"]["trace_id"] == tid(3) and body["trace"]["span_count"] == 2
    assert body["next_cursor"] is None
    root, child = body["spans"]
    assert root["parent_id"] == "" and root["depth"] == 0 and root["offset_ms"] == 0
    assert root["duration_ms"] == pytest.approx(400) and root["name"] == "job-3"
    assert child["parent_id"] == root["span_id"] and child["depth"] == 1
    assert child["offset_ms"] == pytest.approx(10) and child["duration_ms"] == pytest.approx(50)
    assert child["model"] == "gpt-4o" and child["input_tokens"] == 30
    assert child["ttft_ms"] == pytest.approx(20)
    assert "zebra3" in root["input_preview"]
    # upper-case hex is the same trace
    assert env.admin.get(f"{API}/traces/{tid(3).upper()}").json()["trace"] == body["trace"]

    full = env.admin.get(f"{API}/traces/{tid(3)}/spans/{root['span_id']}")
    assert full.status_code == 200, full.text
    span = full.json()
    assert span["trace_id"] == tid(3) and span["attributes"]["tier"] == "silver"
    assert span["input"] == "question zebra3 about the invoice" and span["output"] == "answer 3"
    assert span["session_id"] == "sess-3" and span["resource"]["service.name"] == "svc-a"
    assert span["depth"] == 0


def test_a_big_trace_is_paged(env: Env, seeded: dict[str, Any]) -> None:
    big = seeded["big"]
    r = env.admin.get(f"{API}/traces/{big}", params={"limit": 100})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["trace"]["span_count"] == 1501 and body["trace"]["name"] == "big-root"
    assert body["trace"]["service"] == "big-batch"
    assert len(body["spans"]) == 100 and body["next_cursor"]
    assert body["spans"][0]["span_id"] == seeded["big_root"]
    assert all(s["depth"] == 1 for s in body["spans"][1:])
    seen = [s["span_id"] for s in body["spans"]]
    cursor = body["next_cursor"]
    later: list[dict[str, Any]] = []
    while cursor:
        page = env.admin.get(f"{API}/traces/{big}/spans", params={"cursor": cursor, "limit": 500})
        assert page.status_code == 200, page.text
        assert len(page.json()["data"]) <= 500
        later += page.json()["data"]
        cursor = page.json()["next_cursor"]
    seen += [s["span_id"] for s in later]
    assert len(seen) == len(set(seen)) == 1501
    # on later pages the root is not there to tell the depth; offsets still are
    assert all(s["depth"] is None and s["parent_id"] == seeded["big_root"] for s in later)
    starts = [s["offset_ms"] for s in later]
    assert starts == sorted(starts) and starts[0] >= 0
    # the first page through /spans is the same as the trace's
    first = env.admin.get(f"{API}/traces/{big}/spans", params={"limit": 100}).json()
    assert [s["span_id"] for s in first["data"]] == seen[:100]


def test_a_trace_among_many_that_start_in_the_same_nanosecond(env: Env) -> None:
    """The detail finds its summary by the start index, not by a walk of the others."""
    start = T0 - 3600 * SEC
    ids = [f"{0xC0FFEE00 + n:032x}" for n in range(700)]
    spans = [jspan(t, f"{n + 1:016x}", f"same-{n}", start, 1 + n) for n, t in enumerate(ids)]
    send_json(env, env.owner_key, "same-ns", spans)
    tracing(env).flush()
    for n in (0, 1, 350, 698, 699):
        r = env.admin.get(f"{API}/traces/{ids[n]}")
        assert r.status_code == 200, r.text
        assert r.json()["trace"]["name"] == f"same-{n}"
        assert r.json()["trace"]["duration_ms"] == pytest.approx(1 + n)
    # what that lookup relies on: a cursor just above an id starts the page at that id
    ws = env.admin.get("/api/me").json()["workspace"]["id"]
    for n in (0, 350, 699):
        query = TraceQuery(
            since_ns=start,
            until_ns=start + 1,
            limit=1,
            cursor=encode_cursor("t", start, ids[n] + "0"),
        )
        assert [t.trace_id for t in tracing(env).store.traces(ws, query).items] == [ids[n]]


# --- sessions --------------------------------------------------------------------------


def test_sessions(env: Env, seeded: dict[str, Any]) -> None:
    r = env.admin.get(f"{API}/sessions", params={"limit": 200})
    assert r.status_code == 200, r.text
    by_id = {s["session_id"]: s for s in r.json()["data"]}
    assert {"sess-0", "sess-1", "sess-2", "sess-3"} <= set(by_id)
    s2 = by_id["sess-2"]  # traces 2, 6, 10
    assert s2["trace_count"] == 3 and s2["user_id"] == "user-0" and s2["error_count"] == 1
    assert s2["input_tokens"] == 180 and s2["cost_usd"] == pytest.approx(0.018)
    assert s2["last_active_at"] > s2["started_at"]
    mine = env.admin.get(f"{API}/sessions", params={"user_id": "user-1"}).json()["data"]
    assert {s["session_id"] for s in mine} == {"sess-1", "sess-3"}
    # paged
    page = env.admin.get(f"{API}/sessions", params={"limit": 1}).json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    rest = env.admin.get(
        f"{API}/sessions", params={"limit": 200, "cursor": page["next_cursor"]}
    ).json()
    assert page["data"][0]["session_id"] not in {s["session_id"] for s in rest["data"]}

    one = env.admin.get(f"{API}/sessions/sess-2")
    assert one.status_code == 200, one.text
    assert one.json()["session_id"] == "sess-2"
    assert [t["trace_id"] for t in one.json()["data"]] == [tid(10), tid(6), tid(2)]
    assert env.admin.get(f"{API}/sessions/no-such-session").status_code == 404


# --- metrics ---------------------------------------------------------------------------


def test_metric_roll_ups(env: Env, seeded: dict[str, Any]) -> None:
    params = {**WINDOW, "bucket": "minute", "group_by": "model"}
    r = env.admin.get(f"{API}/metrics", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bucket_seconds"] == 60 and body["group_by"] == ["model"]
    points = {p["group"]["model"]: p for p in body["data"]}
    assert set(points) == {"gpt-4o", "claude-3"}
    gpt = points["gpt-4o"]  # odd i: 1, 3, 5, 7, 9, 11; 5 errored
    assert gpt["requests"] == 6 and gpt["errors"] == 1
    assert gpt["error_rate"] == pytest.approx(1 / 6)
    assert gpt["input_tokens"] == 360 and gpt["output_tokens"] == 180
    assert gpt["cost_usd"] == pytest.approx(0.036)
    assert gpt["bucket"] == "2025-06-15T15:06:00Z" or gpt["bucket"].startswith("2025-06-15T15:06")
    for name in ("latency", "ttft"):
        p50, p90, p99 = (gpt[f"{name}_p{q}_ms"] for q in (50, 90, 99))
        assert p50 is not None and p50 <= p90 <= p99
    assert gpt["latency_p50_ms"] == pytest.approx(50, rel=0.15)
    assert gpt["ttft_p50_ms"] == pytest.approx(20, rel=0.15)
    assert points["claude-3"]["errors"] == 2  # 0 and 10

    both = env.admin.get(
        f"{API}/metrics", params={**WINDOW, "group_by": "route,model", "model": "gpt-4o"}
    ).json()
    groups = {(p["group"]["route"], p["group"]["model"]): p["requests"] for p in both["data"]}
    assert groups == {("alpha", "gpt-4o"): 2, ("beta", "gpt-4o"): 4}  # 3, 9 | 1, 5, 7, 11
    by_key = env.admin.get(
        f"{API}/metrics", params={**WINDOW, "bucket": "3600", "key_id": seeded["app_id"]}
    ).json()
    assert sum(p["requests"] for p in by_key["data"]) == 4 and by_key["bucket_seconds"] == 3600
    day = env.admin.get(f"{API}/metrics", params={**WINDOW, "bucket": "day"}).json()
    assert [p["requests"] for p in day["data"]] == [N] and day["data"][0]["group"] == {}
    # the default window is the last day: 2025 is not in it
    assert all(p["bucket_ns"] > T0 for p in env.admin.get(f"{API}/metrics").json()["data"])


# --- who may read, and whose -----------------------------------------------------------


def _paths(env: Env, seeded: dict[str, Any]) -> list[str]:
    root = f"{2 * 3 + 2:016x}"
    return [
        f"{API}/traces",
        f"{API}/traces/{tid(3)}",
        f"{API}/traces/{tid(3)}/spans",
        f"{API}/traces/{tid(3)}/spans/{root}",
        f"{API}/sessions",
        f"{API}/sessions/sess-3",
        f"{API}/metrics",
    ]


def test_who_may_read(env: Env, seeded: dict[str, Any], keys: dict[str, tuple[str, str]]) -> None:
    for path in _paths(env, seeded):
        assert httpx.get(env.url + path).status_code == 401, path
        r = httpx.get(env.url + path, headers={"authorization": "Bearer sy_nope"})
        assert r.status_code == 401, path
        app = httpx.get(env.url + path, headers={"authorization": f"Bearer {keys['app'][0]}"})
        assert app.status_code == 403, path  # an app key sends spans, reads none
        assert "traces:read" in app.json()["detail"]
        viewer = httpx.get(env.url + path, headers={"authorization": f"Bearer {keys['viewer'][0]}"})
        assert viewer.status_code == 200, (path, viewer.text)


@pytest.fixture(scope="module")
def other_key(env: Env) -> str:
    """An admin key in a second workspace."""
    r = env.admin.post("/api/workspaces", json={"slug": "elsewhere"})
    assert r.status_code == 201, r.text
    with env.app.state.platform.db.transaction() as s:
        _, key = identity.create_key(
            s, actor=None, workspace_id=r.json()["id"], name="elsewhere", role=Role("admin")
        )
    return key


def test_another_workspace_sees_none_of_it(
    env: Env, seeded: dict[str, Any], other_key: str
) -> None:
    other = httpx.Client(
        base_url=env.url, headers={"authorization": f"Bearer {other_key}"}, timeout=30
    )
    assert other.get("/api/me").json()["workspace"]["slug"] == "elsewhere"
    assert other.get(f"{API}/traces").json() == {"data": [], "next_cursor": None}
    assert other.get(f"{API}/traces", params={"q": "invoice"}).json()["data"] == []
    for path in _paths(env, seeded)[1:4] + [f"{API}/sessions/sess-3"]:
        r = other.get(path)
        assert r.status_code == 404, (path, r.text)
    assert other.get(f"{API}/traces/{seeded['big']}").status_code == 404
    assert other.get(f"{API}/sessions").json()["data"] == []
    assert other.get(f"{API}/metrics", params=WINDOW).json()["data"] == []
    # the same trace id sent from the other workspace is another trace
    send_json(env, other_key, "intruder", [seeded_trace(3)[1]])
    tracing(env).flush()
    theirs = other.get(f"{API}/traces/{tid(3)}").json()
    assert theirs["trace"]["span_count"] == 1 and theirs["trace"]["service"] == "intruder"
    mine = env.admin.get(f"{API}/traces/{tid(3)}").json()
    assert mine["trace"]["span_count"] == 2 and mine["trace"]["service"] == "svc-a"
    other.close()


# --- hostile parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "names"),
    [
        ("/traces", {"limit": 0}, 422, "limit"),
        ("/traces", {"limit": 201}, 422, "limit"),
        ("/traces", {"limit": "ten"}, 422, "limit"),
        ("/traces", {"since": "yesterday"}, 422, "since"),
        ("/traces", {"since": "2025-06-15T15:06:40"}, 422, "since"),  # no zone
        ("/traces", {"until": "2025-13-01T00:00:00Z"}, 422, "until"),
        ("/traces", {"status": "maybe"}, 422, "status"),
        ("/traces", {"cursor": "not-a-cursor"}, 400, "cursor"),
        ("/traces", {"cursor": "x" * 401}, 422, "cursor"),
        ("/traces", {"attribute": "no-colon"}, 400, "attribute"),
        ("/traces", {"attribute": ":value"}, 400, "attribute"),
        ("/traces", {"min_duration_ms": -1}, 422, "min_duration_ms"),
        ("/traces", {"min_duration_ms": "nan"}, 422, "min_duration_ms"),
        ("/traces", {"max_cost": "inf"}, 422, "max_cost"),
        ("/traces", {"min_tokens": 10, "max_tokens": 1}, 400, "min_tokens"),
        ("/traces", {"min_tokens": 2**70}, 422, "min_tokens"),
        ("/traces", {"route": "a\x00b"}, 400, "NUL"),  # refused at the edge
        ("/traces", {"route": ""}, 422, "route"),
        ("/traces", {"model": "m" * 201}, 422, "model"),
        ("/traces", {"q": "a\x00b"}, 400, "NUL"),
        ("/traces", {"q": "x" * 1001}, 422, "q"),
        ("/traces/not-hex", {}, 422, "trace_id"),
        (f"/traces/{'a' * 31}", {}, 422, "trace_id"),
        (f"/traces/{'g' * 32}", {}, 422, "trace_id"),
        (f"/traces/{'0' * 31}1", {}, 404, "trace"),
        (f"/traces/{'0' * 31}1/spans", {}, 404, "trace"),
        (f"/traces/{tid(3)}/spans", {"cursor": "AAAA"}, 400, "cursor"),
        (f"/traces/{tid(3)}/spans", {"limit": 1001}, 422, "limit"),
        (f"/traces/{tid(3)}/spans/xyz", {}, 422, "span_id"),
        (f"/traces/{tid(3)}/spans/{'f' * 16}", {}, 404, "span"),
        ("/sessions", {"cursor": "e30"}, 400, "cursor"),
        ("/sessions", {"limit": 0}, 422, "limit"),
        ("/metrics", {"bucket": "week"}, 400, "bucket"),
        ("/metrics", {"bucket": "90"}, 400, "bucket"),
        ("/metrics", {"bucket": "0"}, 400, "bucket"),
        ("/metrics", {"bucket": "-60"}, 400, "bucket"),
        ("/metrics", {"group_by": "route,colour"}, 400, "group_by"),
        ("/metrics", {**WINDOW, "since": WINDOW["until"]}, 400, "since"),
        (
            "/metrics",
            {"since": "1970-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z", "bucket": "minute"},
            400,
            "bucket",
        ),
        ("/metrics", {"since": "0001-01-01T00:00:00+01:00"}, 422, "since"),
    ],
)
def test_hostile_parameters_are_4xx_naming_them(
    env: Env, seeded: dict[str, Any], path: str, params: dict[str, Any], status: int, names: str
) -> None:
    r = env.admin.get(API + path, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert names in r.text, r.text


def test_a_cursor_of_another_list_is_refused(env: Env, seeded: dict[str, Any]) -> None:
    sessions = env.admin.get(f"{API}/sessions", params={"limit": 1}).json()["next_cursor"]
    spans = env.admin.get(f"{API}/traces/{seeded['big']}/spans", params={"limit": 1}).json()
    for cursor in (sessions, spans["next_cursor"]):
        r = env.admin.get(f"{API}/traces", params={"cursor": cursor})
        assert r.status_code == 400 and "cursor" in r.text


@pytest.mark.parametrize(
    "q",
    [
        '"unbalanced',
        "zebra7 OR invoice",
        "NEAR(a b)",
        "col:zebra7",
        "*",
        "a AND NOT b",
        "')); DROP TABLE trace_spans; --",
        "\u00e9t\u00e9 \u4e2d\u6587 \U0001f600",
        "x" * 1000,
    ],
)
def test_full_text_syntax_is_words(env: Env, seeded: dict[str, Any], q: str) -> None:
    r = env.admin.get(f"{API}/traces", params={**WINDOW, "q": q})
    assert r.status_code == 200, r.text
    if q == "col:zebra7":
        assert [t["trace_id"] for t in r.json()["data"]] == []  # "col" is no word there
    if q == "zebra7 OR invoice":  # every word must match: OR is a word too
        assert r.json()["data"] == []


def test_extreme_but_valid_values(env: Env, seeded: dict[str, Any]) -> None:
    for params in (
        {"since": "9999-12-31T23:59:59Z"},
        {"until": "0001-01-01T00:00:00Z"},
        {"min_duration_ms": 1e12, "max_cost": 0},
        {"min_tokens": 2**53},
    ):
        r = env.admin.get(f"{API}/traces", params=params)
        assert r.status_code == 200, (params, r.text)
        assert r.json()["data"] == []
    r = env.admin.get(
        f"{API}/metrics",
        params={
            "since": "2000-01-01T00:00:00Z",
            "until": "9999-12-31T23:59:59Z",
            "bucket": "999999960",
        },
    )
    assert r.status_code == 200, r.text


# --- the gateway's spans ---------------------------------------------------------------


def test_a_gateway_call_is_a_trace_with_its_route_model_and_tokens(
    env: Env, seeded: dict[str, Any], keys: dict[str, tuple[str, str]]
) -> None:
    env.provider(name="fake-traces")
    env.route("traced", {"provider": "fake-traces", "model": "gpt-4o-mini"})
    caller_trace, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    r = httpx.post(
        f"{env.url}/v1/chat/completions",
        json={"model": "traced", "messages": [{"role": "user", "content": "hi"}]},
        headers={
            "authorization": f"Bearer {keys['app'][0]}",
            "traceparent": f"00-{caller_trace}-{caller_span}-01",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    tracing(env).flush()
    listed = env.admin.get(f"{API}/traces", params={"route": "traced"}).json()["data"]
    assert [t["trace_id"] for t in listed] == [caller_trace]
    trace = env.admin.get(f"{API}/traces/{caller_trace}").json()
    [span] = trace["spans"]
    assert span["parent_id"] == caller_span  # joined to the caller's span
    assert span["service"] == "shipyard-gateway" and span["route"] == "traced"
    assert span["model"] == "gpt-4o-mini" and span["input_tokens"] > 0
    assert span["output_tokens"] > 0 and trace["trace"]["key_id"] == keys["app"][1]
    full = env.admin.get(f"{API}/traces/{caller_trace}/spans/{span['span_id']}").json()
    assert full["attributes"]["gen_ai.operation.name"] == "chat"
    # and on /metrics
    text = env.admin.get("/metrics").text
    assert re.search(r'shipyard_llm_calls_total\{[^}]*route="traced"[^}]*\} 1\.0', text), text


# --- Prometheus ------------------------------------------------------------------------


def _samples(text: str, name: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = line[len(name) + 1 : line.index("}")]
            out.append(dict(re.findall(r'(\w+)="([^"]*)"', labels)))
    return out


def test_llm_metrics_on_the_scrape(env: Env, seeded: dict[str, Any]) -> None:
    text = env.admin.get("/metrics").text
    calls = {(s["route"], s["model"]): s for s in _samples(text, "shipyard_llm_calls_total")}
    assert ("alpha", "claude-3") in calls and ("beta", "gpt-4o") in calls
    assert all(s["workspace"] for s in calls.values())
    line = next(
        x
        for x in text.splitlines()
        if x.startswith("shipyard_llm_calls_total{")
        and 'route="beta"' in x
        and 'model="gpt-4o"' in x
    )
    assert float(line.rsplit(" ", 1)[1]) >= 4  # 1, 5, 7, 11 (more once other tests ran)
    for name in (
        "shipyard_llm_errors_total",
        "shipyard_llm_input_tokens_total",
        "shipyard_llm_output_tokens_total",
        "shipyard_llm_cost_usd_total",
        "shipyard_llm_latency_seconds_bucket",
        "shipyard_llm_ttft_seconds_bucket",
        "shipyard_llm_latency_seconds_count",
    ):
        assert _samples(text, name), name
    # spans that are no model call (the big trace's steps) are not counted
    assert "big-batch" not in text and not any(
        s["model"].startswith("step") for s in calls.values()
    )


def test_label_values_are_bounded(env: Env, seeded: dict[str, Any]) -> None:
    spans = [
        jspan(
            f"{0xB0B0 + n:032x}",
            f"{n + 1:016x}",
            "chat",
            T0,
            5,
            gen_ai__request__model=f"model-{n}",
        )
        for n in range(80)
    ]
    send_json(env, env.owner_key, "many-models", spans)
    tracing(env).flush()
    text = env.admin.get("/metrics").text
    models = {s["model"] for s in _samples(text, "shipyard_llm_calls_total")}
    assert "other" in models and len(models) <= 51  # 50 values, then "other"
    total = sum(
        float(x.rsplit(" ", 1)[1])
        for x in text.splitlines()
        if x.startswith("shipyard_llm_calls_total{")
    )
    assert total >= N + 80  # every call is still counted


def test_the_collector_on_its_own() -> None:
    registry = CollectorRegistry()
    m = LLMMetrics(registry, max_values=2)
    span = Span(workspace_id="ws_1", trace_id="a" * 32, span_id="b" * 16)
    m.observe([span])  # not a model call: nothing
    assert b"shipyard_llm_calls_total{" not in generate_latest(registry)
    calls = [
        Span(
            workspace_id="ws_1",
            trace_id="a" * 32,
            span_id=f"{n:016x}",
            model=f"m{n}",
            route="r" * 500 if n == 3 else "",
            start_ns=0,
            end_ns=int(1.5e9),
            status="error" if n == 0 else "ok",
            input_tokens=10,
            output_tokens=-5,  # hostile: never subtracted
            cost_usd=float("nan"),
            ttft_ms=250.0 if n else None,
        )
        for n in range(4)
    ]
    m.observe(calls)
    text = generate_latest(registry).decode()
    assert 'shipyard_llm_calls_total{model="m0",route="none",workspace="ws_1"} 1.0' in text
    assert 'shipyard_llm_calls_total{model="other",route="none",workspace="ws_1"} 1.0' in text
    assert 'model="other",route="other"' in text  # a 500-character route is "other"
    assert 'shipyard_llm_errors_total{model="m0",route="none",workspace="ws_1"} 1.0' in text
    assert "shipyard_llm_output_tokens_total" in text and "-5" not in text
    assert 'shipyard_llm_cost_usd_total{model="m0",route="none",workspace="ws_1"} 0.0' in text
    assert (
        'shipyard_llm_latency_seconds_bucket{le="1.0",model="m0",route="none",workspace="ws_1"}'
        " 0.0" in text
    )
    assert (
        'shipyard_llm_latency_seconds_bucket{le="2.0",model="m0",route="none",workspace="ws_1"}'
        " 1.0" in text
    )
    assert 'shipyard_llm_ttft_seconds_count{model="m0",route="none",workspace="ws_1"} 0.0' in text
    assert 'shipyard_llm_ttft_seconds_count{model="m1",route="none",workspace="ws_1"} 1.0' in text


def test_the_grafana_dashboard_queries_what_is_exposed(env: Env, seeded: dict[str, Any]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(panels) >= 6 and len(exprs) >= len(panels)
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
    for v in variables.values():
        if v["type"] == "query":
            exprs.append(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
    text = env.admin.get("/metrics").text
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    used = {name for e in exprs for name in re.findall(r"\bshipyard_[a-z0-9_]+", e)}
    assert used and used <= exposed, sorted(used - exposed)
    joined = " ".join(exprs)
    for needed in ("histogram_quantile(0.5", "histogram_quantile(0.9", "histogram_quantile(0.99"):
        assert needed in joined.replace(" ", ""), needed
    for label in ("route", "model"):
        assert f"by (le, {label}" in joined or "by (le, route, model" in joined
