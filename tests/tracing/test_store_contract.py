"""The `TraceStore` contract, one suite on every engine (SQLite in a temporary file,
PostgreSQL on the test server): idempotent writes, summaries, every filter, hostile full
text, cursor paging, huge traces, sessions, roll-up metrics, retention, workspace
isolation and unstorable strings."""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ConfigError, InvalidInput
from shipyard.plugins import TraceStore
from shipyard.tracing.spans import MetricsQuery, Span, TraceQuery
from shipyard.tracing.store import base, fold, histogram, open_store
from shipyard.tracing.store.postgres import PostgresTraceStore
from shipyard.tracing.store.sqlite import SqliteTraceStore
from tests.conftest import _pg_database

MINUTE = base.MINUTE_NS
T0 = 28_333_334 * MINUTE  # a minute boundary in November 2023
MS = 1_000_000


@pytest.fixture
def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TraceStore]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/traces.db"
    else:
        url = _pg_database(request.getfixturevalue("pg_server"))
    found = open_store(url)
    yield found
    found.close()


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(trace: int, i: int) -> str:
    return f"{trace:08x}{i:08x}"


def mk(trace: int, i: int = 0, *, ws: str = "ws", at: int | None = None, **kw: Any) -> Span:
    """Span i of trace n: i 0 is the root, the others its children."""
    start = T0 + trace * 1000 * MS + i * MS if at is None else at
    values: dict[str, Any] = {
        "parent_id": "" if i == 0 else sid(trace, 0),
        "name": f"span-{trace}-{i}",
        "start_ns": start,
        "end_ns": start + 10 * MS,
        "attributes": {"n": trace, "i": i},
    }
    values.update(kw)
    return Span(ws, tid(trace), sid(trace, i), **values)


def ids(store: TraceStore, query: TraceQuery, ws: str = "ws") -> list[str]:
    return [t.trace_id for t in store.traces(ws, query).items]


def all_pages(store: TraceStore, query: TraceQuery, ws: str = "ws") -> list[str]:
    found: list[str] = []
    cursor = query.cursor
    while True:
        page = store.traces(ws, TraceQuery(**{**_fields(query), "cursor": cursor}))
        found += [t.trace_id for t in page.items]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _fields(query: TraceQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in TraceQuery.__slots__}


def test_each_engine_gets_its_own_store(store: TraceStore, backend: str) -> None:
    expected = SqliteTraceStore if backend == "sqlite" else PostgresTraceStore
    assert type(store) is expected
    check: TraceStore = store  # satisfies the Protocol (mypy checks this line)
    assert check is store


def test_writing_the_same_batch_twice_counts_nothing_twice(store: TraceStore) -> None:
    batch = [
        mk(t, i, model="m", route="r", session_id="s1", input_tokens=3, cost_usd=0.5)
        for t in range(3)
        for i in range(4)
    ]
    assert store.write(batch) == 12
    before = (
        store.traces("ws", TraceQuery()).items,
        store.sessions("ws").items,
        store.metrics("ws", MetricsQuery(T0, T0 + 3600 * 10**9)),
    )
    assert store.write(batch) == 0
    assert store.write(batch[:5] + [mk(9, 0, model="m")]) == 1  # a retry with one new span
    assert store.write([mk(9, 0, model="m"), mk(9, 0, model="m")]) == 0  # and a duplicate
    # the same span id again with another start time (and in the same batch): still one
    moved = mk(9, 0, model="m", at=T0 + 5 * MINUTE)
    assert store.write([moved, mk(9, 0, model="m", at=T0 + 6 * MINUTE)]) == 0
    assert [s.start_ns for s in store.trace_spans("ws", tid(9)).items] == [mk(9, 0).start_ns]
    traces = store.traces("ws", TraceQuery()).items
    assert [t for t in traces if t.trace_id != tid(9)] == before[0]
    assert store.sessions("ws").items == before[1]
    points = store.metrics("ws", MetricsQuery(T0, T0 + 3600 * 10**9))
    assert sum(p.requests for p in points) == sum(p.requests for p in before[2]) + 1
    assert store.write([]) == 0


def test_a_summary_follows_its_spans_in_any_order(store: TraceStore) -> None:
    child = mk(1, 2, model="gpt-4o", input_tokens=10, output_tokens=5, cost_usd=0.25)
    early = mk(1, 1, route="chat", status="error", input="first input", output="first out")
    assert store.write([child]) == 1
    (summary,) = store.traces("ws", TraceQuery()).items
    assert summary.name == "span-1-2" and summary.span_count == 1 and summary.status == "ok"
    store.write([early])
    (summary,) = store.traces("ws", TraceQuery()).items
    assert summary.name == "span-1-1"  # the earliest span names it until the root comes
    assert summary.input == "first input"
    root = mk(1, 0, user_id="u1", session_id="s1", service="svc", input="x" * 2000)
    store.write([root, mk(1, 3, model="other", key_id="k1")])
    (summary,) = store.traces("ws", TraceQuery()).items
    assert summary.name == "span-1-0" and summary.input == "x" * fold.PREVIEW_CHARS
    assert summary.output == ""
    assert (summary.span_count, summary.error_count, summary.status) == (4, 1, "error")
    assert (summary.model, summary.route, summary.key_id) == ("gpt-4o", "chat", "k1")
    assert (summary.user_id, summary.session_id, summary.service) == ("u1", "s1", "svc")
    assert (summary.input_tokens, summary.output_tokens) == (10, 5)
    assert summary.cost_usd == pytest.approx(0.25)
    assert summary.start_ns == root.start_ns and summary.end_ns == mk(1, 3).end_ns
    later_root = mk(1, 9, parent_id="", name="second root")
    store.write([later_root])
    assert store.traces("ws", TraceQuery()).items[0].name == "span-1-0"  # the first root stays
    got = store.span("ws", tid(1), sid(1, 2))
    assert got == child
    assert store.span("ws", tid(1), sid(1, 77)) is None
    assert store.trace("ws", tid(1)) == store.traces("ws", TraceQuery()).items[0]
    assert store.trace("ws", tid(2)) is None
    assert store.trace("other-ws", tid(1)) is None  # by id, still only in its workspace


def _population() -> list[Span]:
    spans: list[Span] = []
    for t in range(40):
        common = {
            "route": f"route{t % 3}",
            "model": f"model{t % 4}",
            "key_id": f"key{t % 5}",
            "user_id": f"user{t % 2}",
            "session_id": f"sess{t % 6}",
            "service": f"svc{t % 7}",
        }
        spans.append(mk(t, 0, **common, input=f"question {t} about refunds" if t % 10 == 0 else ""))
        spans.append(
            mk(
                t,
                1,
                end_ns=mk(t, 1).start_ns + (t + 1) * MS,
                status="error" if t % 8 == 0 else "ok",
                cost_usd=t / 100,
                input_tokens=t,
                output_tokens=2 * t,
                attributes={
                    "tier": "gold" if t % 9 == 0 else "free",
                    "retries": t % 2,
                    "ok": t % 3 == 0,
                },
                output="shipped to Zürich" if t == 7 else "",
                **common,
            )
        )
    return spans


@pytest.mark.parametrize("text_list", [base.TEXT_LIST, 1])
def test_every_filter_of_the_trace_list(
    store: TraceStore, text_list: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "TEXT_LIST", text_list)  # 1: text is checked on the walk
    spans = _population()
    store.write(spans)
    by = range(40)

    def expect(keep: Any) -> list[str]:
        return [tid(t) for t in reversed(by) if keep(t)]

    def duration(t: int) -> float:
        return (mk(t, 1).start_ns + (t + 1) * MS - mk(t, 0).start_ns) / MS

    cases: list[tuple[TraceQuery, list[str]]] = [
        (TraceQuery(limit=100), expect(lambda t: True)),
        (TraceQuery(since_ns=mk(10, 0).start_ns, limit=100), expect(lambda t: t >= 10)),
        (TraceQuery(until_ns=mk(10, 0).start_ns, limit=100), expect(lambda t: t < 10)),
        (TraceQuery(route="route1", limit=100), expect(lambda t: t % 3 == 1)),
        (TraceQuery(model="model2", limit=100), expect(lambda t: t % 4 == 2)),
        (TraceQuery(key_id="key3", limit=100), expect(lambda t: t % 5 == 3)),
        (TraceQuery(user_id="user1", limit=100), expect(lambda t: t % 2 == 1)),
        (TraceQuery(session_id="sess5", limit=100), expect(lambda t: t % 6 == 5)),
        (TraceQuery(service="svc4", limit=100), expect(lambda t: t % 7 == 4)),
        (TraceQuery(status="error", limit=100), expect(lambda t: t % 8 == 0)),
        (TraceQuery(status="ok", limit=100), expect(lambda t: t % 8 != 0)),
        (TraceQuery(min_duration_ms=20, limit=100), expect(lambda t: duration(t) >= 20)),
        (TraceQuery(max_duration_ms=15, limit=100), expect(lambda t: duration(t) <= 15)),
        (TraceQuery(min_cost_usd=0.3, limit=100), expect(lambda t: t / 100 >= 0.3)),
        (TraceQuery(max_cost_usd=0.05, limit=100), expect(lambda t: t / 100 <= 0.05)),
        (TraceQuery(min_tokens=90, limit=100), expect(lambda t: 3 * t >= 90)),
        (TraceQuery(max_tokens=9, limit=100), expect(lambda t: 3 * t <= 9)),
        (TraceQuery(attribute=("tier", "gold"), limit=100), expect(lambda t: t % 9 == 0)),
        (TraceQuery(attribute=("retries", "1"), limit=100), expect(lambda t: t % 2 == 1)),
        (TraceQuery(attribute=("ok", "true"), limit=100), expect(lambda t: t % 3 == 0)),
        (TraceQuery(attribute=("n", "12"), limit=100), [tid(12)]),
        (TraceQuery(attribute=("nope", "gold"), limit=100), []),
        (TraceQuery(text="refunds", limit=100), expect(lambda t: t % 10 == 0)),
        (TraceQuery(text="question 20", limit=100), [tid(20)]),
        (TraceQuery(text="zürich", limit=100), [tid(7)]),
        (TraceQuery(route="route0", model="model0", limit=100), expect(lambda t: t % 12 == 0)),
        (
            TraceQuery(user_id="user0", status="error", since_ns=mk(5, 0).start_ns, limit=100),
            expect(lambda t: t % 2 == 0 and t % 8 == 0 and t >= 5),
        ),
        (TraceQuery(route="route9", limit=100), []),
    ]
    for query, expected in cases:
        assert ids(store, query) == expected, query
    with pytest.raises(InvalidInput) as bad:
        store.traces("ws", TraceQuery(status="maybe"))
    assert bad.value.param == "status"
    with pytest.raises(InvalidInput) as bad:
        store.traces("ws", TraceQuery(limit=0))
    assert bad.value.param == "limit"


@pytest.mark.parametrize(
    "text",
    [
        '"',
        '"refunds',
        "refunds*",
        "*",
        "NEAR(refunds question",
        "NEAR(",
        "-refunds",
        "question -about",
        "input:refunds",
        "refunds:",
        "^refunds",
        "(refunds) AND OR NOT",
        "refunds' OR 1=1 --",
        "{input output}: refunds",
        "\x00refunds",
        "\ud800 refunds",
        "   ",
        "a" * 5000,
    ],
)
def test_full_text_reads_no_query_syntax(
    store: TraceStore, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(_population())
    monkeypatch.setattr(base, "TEXT_LIST", 1)
    ids(store, TraceQuery(text=text, limit=100))  # on the walk: never an error either
    monkeypatch.undo()
    found = ids(store, TraceQuery(text=text, limit=100))  # never an error
    words = [w for w in text.replace("\x00", " ").split() if any(c.isalnum() for c in w)]
    if words == ["refunds"] or text in ('"refunds', "refunds*", "-refunds", "^refunds"):
        assert found == [tid(t) for t in (30, 20, 10, 0)]


def test_cursor_pages_have_no_duplicates_or_gaps(store: TraceStore) -> None:
    # 300 traces, ten to a start time (ties broken by trace id), written out of order
    spans = [mk(t, 0, at=T0 + (t // 10) * MS) for t in range(300)]
    store.write(spans[150:])
    store.write(spans[:150])
    expected = [tid(t) for t in sorted(range(300), key=lambda t: (t // 10, t), reverse=True)]
    assert all_pages(store, TraceQuery(limit=7)) == expected
    # newer traces land between pages: the walk neither repeats nor skips
    first = store.traces("ws", TraceQuery(limit=25))
    store.write([mk(1000 + t, 0, at=T0 + 10**12 + t) for t in range(20)])
    store.write([mk(2000, 0, at=T0 + 15 * MS)])  # an older one, past the cursor
    rest = all_pages(store, TraceQuery(limit=13, cursor=first.next_cursor))
    walked = [t.trace_id for t in first.items] + rest
    assert len(walked) == len(set(walked)) == 301
    assert walked == [t for t in expected[:25]] + [
        t for t in sorted(expected[25:] + [tid(2000)], key=lambda x: (_start(x), x), reverse=True)
    ]
    filtered = all_pages(store, TraceQuery(limit=4, since_ns=T0 + 20 * MS, until_ns=T0 + 25 * MS))
    assert filtered == [tid(t) for t in sorted(range(200, 250), reverse=True)]


def _start(trace_id: str) -> int:
    n = int(trace_id, 16)
    return T0 + 15 * MS if n == 2000 else T0 + (n // 10) * MS


@pytest.mark.parametrize(
    "cursor",
    ["", "nope", "!!!!", "W10", "WyJ0IiwxLCJ4IiwxXQ", "WyJ4IiwxLCJ4Il0", "eyJhIjoxfQ", "x" * 1000],
)
def test_a_bad_cursor_is_invalid_input(store: TraceStore, cursor: str) -> None:
    store.write([mk(t) for t in range(3)])
    with pytest.raises(InvalidInput) as bad:
        store.traces("ws", TraceQuery(cursor=cursor))
    assert bad.value.param == "cursor"
    with pytest.raises(InvalidInput):
        store.trace_spans("ws", tid(1), cursor=cursor)
    with pytest.raises(InvalidInput):
        store.sessions("ws", cursor=cursor)
    store.write([mk(1, 1)])
    spans_cursor = store.trace_spans("ws", tid(1), limit=1).next_cursor
    traces_cursor = store.traces("ws", TraceQuery(limit=1)).next_cursor
    assert spans_cursor is not None and traces_cursor is not None
    with pytest.raises(InvalidInput):  # another list's cursor
        store.traces("ws", TraceQuery(cursor=spans_cursor))
    with pytest.raises(InvalidInput):
        store.trace_spans("ws", tid(1), cursor=traces_cursor)


def test_a_huge_trace_comes_a_page_at_a_time(store: TraceStore) -> None:
    spans = [mk(5, i, at=T0 + (i // 3) * 1000) for i in range(5000)]
    for i in range(0, 5000, 512):
        assert store.write(spans[i : i + 512]) == len(spans[i : i + 512])
    (summary,) = store.traces("ws", TraceQuery()).items
    assert summary.span_count == 5000
    got: list[Span] = []
    cursor = None
    pages = 0
    while True:
        page = store.trace_spans("ws", tid(5), cursor=cursor, limit=700)
        assert len(page.items) <= 700
        got += page.items
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 8
    assert [s.span_id for s in got] == [
        s.span_id for s in sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    ]
    assert got[1234] == sorted(spans, key=lambda s: (s.start_ns, s.span_id))[1234]
    assert store.trace_spans("ws", tid(6)).items == []


def test_sessions_add_up_their_traces(store: TraceStore) -> None:
    spans = []
    for t in range(12):
        session = f"s{t % 3}"
        spans.append(mk(t, 0, session_id=session, user_id=f"u{t % 3 % 2}"))
        spans.append(mk(t, 1, session_id=session, input_tokens=t, cost_usd=1.0, status="error"))
    spans.append(mk(50, 0))  # no session
    store.write(spans)
    sessions = store.sessions("ws").items
    assert [s.session_id for s in sessions] == ["s2", "s1", "s0"]  # most recent first
    s0 = sessions[-1]
    assert (s0.trace_count, s0.input_tokens, s0.error_count, s0.user_id) == (
        4,
        0 + 3 + 6 + 9,
        4,
        "u0",
    )
    assert s0.cost_usd == pytest.approx(4.0)
    assert s0.start_ns == mk(0, 0).start_ns and s0.end_ns == mk(9, 1).end_ns
    assert [s.session_id for s in store.sessions("ws", user_id="u0").items] == ["s2", "s0"]
    # a trace joins a session with a later span: counted once, with what it held already
    store.write([mk(60, 0, input_tokens=100), mk(60, 1, session_id="s0", input_tokens=1)])
    store.write([mk(60, 2, session_id="s9")])  # the first session seen wins
    s0 = [s for s in store.sessions("ws").items if s.session_id == "s0"][0]
    assert (s0.trace_count, s0.input_tokens) == (5, 18 + 101)
    first = store.sessions("ws", limit=1)
    second = store.sessions("ws", limit=1, cursor=first.next_cursor)
    third = store.sessions("ws", limit=5, cursor=second.next_cursor)
    walked = [s.session_id for s in first.items + second.items + third.items]
    assert walked == ["s0", "s2", "s1"] and third.next_cursor is None


def test_metrics_come_from_the_roll_ups(store: TraceStore) -> None:
    latencies: dict[tuple[int, str], list[float]] = {}
    ttfts: dict[tuple[int, str], list[float]] = {}
    spans = []
    n = 0
    for minute in range(4):
        for model in ("gpt", "claude"):
            for j in range(60):
                ms = 0.5 * 1.07 ** ((j * 7 + minute * 13) % 97)  # 0.5 ms to ~350 ms
                ttft = ms / 3 if j % 4 else None
                start = T0 + minute * MINUTE + j * 100 * MS
                spans.append(
                    mk(
                        n,
                        1,
                        at=start,
                        end_ns=start + round(ms * MS),
                        model=model,
                        route="r1" if j % 2 else "r2",
                        key_id="k",
                        status="error" if j % 10 == 0 else "ok",
                        input_tokens=2,
                        output_tokens=3,
                        cost_usd=0.01,
                        ttft_ms=ttft,
                        input="abcd",
                        output="xy",
                    )
                )
                latencies.setdefault((minute // 2, model), []).append(round(ms * MS) / MS)
                if ttft is not None:
                    ttfts.setdefault((minute // 2, model), []).append(ttft)
                n += 1
    spans.append(mk(n, 0, at=T0))  # no model: not a model call, not in the roll-ups
    spans.append(mk(n + 1, 1, at=T0, model="gpt", ws="other"))
    store.write(spans)
    query = MetricsQuery(T0, T0 + 4 * MINUTE, bucket_seconds=120, group_by=("model",))
    points = store.metrics("ws", query)
    assert [(p.bucket_ns, p.group) for p in points] == [
        (T0 + b * 2 * MINUTE, {"model": m}) for b in (0, 1) for m in ("claude", "gpt")
    ]

    def nearest_rank(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[max(1, math.ceil(q * len(ordered))) - 1]

    resolution = histogram.GROWTH**0.5 * 1.001
    for p in points:
        key = ((p.bucket_ns - T0) // (2 * MINUTE), p.group["model"])
        assert p.requests == 120 and p.errors == 12 and p.error_rate == pytest.approx(0.1)
        assert (p.input_tokens, p.output_tokens, p.input_chars, p.output_chars) == (
            240,
            360,
            480,
            240,
        )
        assert p.cost_usd == pytest.approx(1.2)
        for q, got in ((0.5, p.latency_p50_ms), (0.9, p.latency_p90_ms), (0.99, p.latency_p99_ms)):
            exact = nearest_rank(latencies[key], q)
            assert got is not None and exact / resolution <= got <= exact * resolution, (q, key)
        for q, got in ((0.5, p.ttft_p50_ms), (0.9, p.ttft_p90_ms), (0.99, p.ttft_p99_ms)):
            exact = nearest_rank(ttfts[key], q)
            assert got is not None and exact / resolution <= got <= exact * resolution
    by_minute = store.metrics("ws", MetricsQuery(T0, T0 + 4 * MINUTE, bucket_seconds=60))
    assert [p.requests for p in by_minute] == [120] * 4 and by_minute[0].group == {}
    routes = store.metrics(
        "ws", MetricsQuery(T0, T0 + MINUTE, bucket_seconds=60, group_by=("route", "model"))
    )
    assert sorted((p.group["route"], p.group["model"], p.requests) for p in routes) == [
        ("r1", "claude", 30),
        ("r1", "gpt", 30),
        ("r2", "claude", 30),
        ("r2", "gpt", 30),
    ]
    # a bucket the range touches comes whole: the hour holds all four minutes
    (hour,) = store.metrics("ws", MetricsQuery(T0 + MINUTE, T0 + MINUTE + 1, bucket_seconds=3600))
    assert hour.requests == 480 and hour.bucket_ns == T0 - T0 % (3600 * 10**9)
    only = store.metrics("ws", MetricsQuery(T0, T0 + 4 * MINUTE, bucket_seconds=600, model="gpt"))
    assert [p.requests for p in only] == [240]
    everyone = store.metrics(None, MetricsQuery(T0, T0 + 4 * MINUTE, bucket_seconds=600))
    assert [p.requests for p in everyone] == [481]
    assert store.metrics("ws", MetricsQuery(T0 + 10 * MINUTE, T0 + 20 * MINUTE, 60)) == []
    for bad, param in (
        (MetricsQuery(T0, T0 + MINUTE, bucket_seconds=90), "bucket_seconds"),
        (MetricsQuery(T0, T0 + MINUTE, bucket_seconds=0), "bucket_seconds"),
        (MetricsQuery(T0, T0 + MINUTE, group_by=("user_id",)), "group_by"),
    ):
        with pytest.raises(InvalidInput) as error:
            store.metrics("ws", bad)
        assert error.value.param == param


def test_purge_deletes_raw_spans_and_keeps_roll_ups(
    store: TraceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "PURGE_SPANS", 7)  # many small transactions
    monkeypatch.setattr(base, "PURGE_TRACES", 3)
    old = [
        mk(t, i, model="m", session_id="s", input=f"ancient word{t}", input_tokens=1)
        for t in range(10)
        for i in range(4)
    ]
    old += [mk(t, i, at=T0 + i) for t in (11,) for i in range(30)]  # one big old trace
    new = [
        mk(100 + t, i, model="m", session_id="s", input="recent", input_tokens=1)
        for t in range(3)
        for i in range(2)
    ]
    store.write(old + new)
    store.write([mk(0, 0, ws="other", model="m")])
    metrics_before = store.metrics(None, MetricsQuery(T0, T0 + 3600 * 10**9, bucket_seconds=3600))
    cutoff = mk(100, 0).start_ns
    assert store.purge("ws", cutoff) == 70
    assert ids(store, TraceQuery()) == [tid(102), tid(101), tid(100)]
    assert ids(store, TraceQuery(text="ancient")) == []
    assert (
        store.trace_spans("ws", tid(3)).items == [] and store.span("ws", tid(3), sid(3, 0)) is None
    )
    assert len(store.trace_spans("ws", tid(101)).items) == 2
    (session,) = store.sessions("ws").items
    assert (session.trace_count, session.input_tokens) == (3, 6)
    assert (
        store.metrics(None, MetricsQuery(T0, T0 + 3600 * 10**9, bucket_seconds=3600))
        == metrics_before
    )
    assert ids(store, TraceQuery(), ws="other") == [tid(0)]  # another workspace keeps its own
    assert store.purge("ws", cutoff) == 0
    # a purged trace's span sent again is new again
    assert store.write([mk(3, 0)]) == 1
    store.purge("ws", 2**63 - 1)
    assert store.sessions("ws").items == [] and ids(store, TraceQuery()) == []


def test_a_workspace_never_sees_another_workspaces_spans(store: TraceStore) -> None:
    for ws in ("a", "b"):
        store.write(
            [
                mk(
                    t,
                    i,
                    ws=ws,
                    model=f"model-{ws}",
                    session_id=f"sess-{ws}",
                    input=f"secret of {ws}",
                    attributes={"owner": ws},
                )
                for t in range(3)
                for i in range(2)
            ]
        )
    for ws, other in (("a", "b"), ("b", "a")):
        assert {t.workspace_id for t in store.traces(ws, TraceQuery()).items} == {ws}
        assert ids(store, TraceQuery(text=f"secret of {other}"), ws=ws) == []
        assert ids(store, TraceQuery(text="secret"), ws=ws) == [tid(2), tid(1), tid(0)]
        assert ids(store, TraceQuery(attribute=("owner", other)), ws=ws) == []
        assert ids(store, TraceQuery(model=f"model-{other}"), ws=ws) == []
        assert {s.workspace_id for s in store.trace_spans(ws, tid(1)).items} == {ws}
        got = store.span(ws, tid(1), sid(1, 1))
        assert got is not None and got.workspace_id == ws
        assert [s.session_id for s in store.sessions(ws).items] == [f"sess-{ws}"]
        (point,) = store.metrics(ws, MetricsQuery(T0, T0 + 3600 * 10**9, group_by=("model",)))
        assert point.group == {"model": f"model-{ws}"} and point.requests == 6
    assert ids(store, TraceQuery(), ws="c") == [] and store.sessions("c").items == []


def test_unstorable_strings_do_not_break_the_batch(store: TraceStore) -> None:
    nasty = mk(
        1,
        0,
        name="na\x00me",
        input="in\x00put \ud800 lone",
        output="\udfff",
        model="m\x00",
        session_id="s\x00",
        cost_usd=math.nan,
        ttft_ms=math.inf,
        attributes={
            "k\x00ey": "v\x00al",
            "lone": "\ud83d",
            "big": 2**80,
            "nested": {"deep": ["\x00", {"x": "\ud800"}]},
            "nan": math.nan,
            "obj": object(),
        },
        events=[{"name": "e\x00", "time_ns": 1, "attributes": {"a": "\x00"}}],
        resource={"service.name": "svc\x00"},
    )
    huge = [
        mk(3, i, input_tokens=2**63 - 1, output_tokens=-5, cost_usd=1e308, start_ns=-(2**63))
        for i in range(3)
    ]
    huge.append(mk(3, 3, end_ns=2**63 - 1, input_tokens=10**30, ttft_ms=-1.0))
    fine = [mk(1, 1, input="plain"), mk(2, 0)]
    assert store.write([nasty, *fine, *huge]) == 7
    store.write([mk(3, 4, input_tokens=2**62, cost_usd=1e300)])  # sums stay in range
    (big,) = [t for t in store.traces("ws", TraceQuery()).items if t.trace_id == tid(3)]
    assert big.input_tokens == 4 * 2**32 + 2**32 and big.output_tokens == 0
    assert big.start_ns == 0 and big.end_ns == 2**62 and big.cost_usd == 3e9 + 1e9
    assert ids(store, TraceQuery(min_duration_ms=1e30, min_tokens=2**62)) == []
    assert store.metrics("ws", MetricsQuery(0, 2**63 - 1, bucket_seconds=3600))
    got = store.span("ws", tid(1), sid(1, 0))
    assert got is not None
    assert got.name == "na\ufffdme" and got.input == "in\ufffdput ? lone" and got.output == "?"
    assert got.model == "m\ufffd" and got.cost_usd == 0.0 and got.ttft_ms == 0.0
    assert got.attributes["k\ufffdey"] == "v\ufffdal" and got.attributes["lone"] == "?"
    assert got.attributes["big"] == str(2**80) and got.attributes["nan"] is None
    assert got.attributes["nested"] == {"deep": ["\ufffd", {"x": "?"}]}
    assert got.events[0]["name"] == "e\ufffd" and got.resource == {"service.name": "svc\ufffd"}
    assert ids(store, TraceQuery(session_id="s\x00")) == [tid(1)]  # filters are cleaned alike
    ids(store, TraceQuery(text="in\x00put \ud800"))  # cleaned too: no error
    assert ids(store, TraceQuery(text="lone")) == [tid(1)]
    assert store.span("ws\x00", tid(1), sid(1, 0)) is None


def test_readers_on_threads_while_the_writer_writes(store: TraceStore) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                store.traces("ws", TraceQuery(model="m", limit=20))
                store.sessions("ws")
        except BaseException as exc:  # reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for batch in range(20):
            store.write(
                [
                    mk(batch * 10 + t, i, model="m", session_id="s")
                    for t in range(10)
                    for i in range(3)
                ]
            )
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert errors == []
    assert len(all_pages(store, TraceQuery(limit=50))) == 200


def test_open_store_refuses_what_it_cannot_open(tmp_path: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "mysql://x/y", "traces.db", "sqlite:///"):
        with pytest.raises(ConfigError):
            open_store(url)


def test_the_sqlite_file_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "traces.db"
    store = open_store(f"sqlite:///{path}")
    store.write([mk(1)])
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.execute("UPDATE trace_store_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(ConfigError):
        open_store(f"sqlite:///{path}")
    link = tmp_path / "link.db"
    os.symlink(tmp_path / "elsewhere.db", link)
    with pytest.raises(OSError):
        open_store(f"sqlite:///{link}")
    assert not (tmp_path / "elsewhere.db").exists()


def test_hourly_buckets_come_whole_from_the_hourly_roll_ups(store: TraceStore) -> None:
    hour0 = T0 - T0 % (60 * MINUTE) + 60 * MINUTE  # an hour boundary
    spans = []
    for n in range(180):  # one a minute for three hours, from minute 0
        start = hour0 + n * MINUTE + 5 * 10**9
        key = f"k{n % 3}"
        spans.append(mk(n, 1, at=start, model="m", key_id=key, end_ns=start + (n + 1) * MS))
    store.write(spans[:100])
    store.write(spans[100:])  # hourly rows merge across batches
    since, until = hour0 + 30 * MINUTE, hour0 + 150 * MINUTE + 1  # ragged at both ends

    def expected(keep: Any = lambda n: True) -> dict[int, int]:
        counts: dict[int, int] = {}  # every hour the range touches, whole
        for n in range(180):
            if keep(n):
                bucket = hour0 + (n // 60) * 60 * MINUTE
                counts[bucket] = counts.get(bucket, 0) + 1
        return counts

    points = store.metrics("ws", MetricsQuery(since, until, bucket_seconds=3600))
    got = {p.bucket_ns: p.requests for p in points}
    assert got == expected() == {hour0 + h * 60 * MINUTE: 60 for h in range(3)}
    middle_only = store.metrics("ws", MetricsQuery(hour0 + 60 * MINUTE, hour0 + 120 * MINUTE))
    assert [p.requests for p in middle_only] == [60]
    middle = points[1]
    exact = sorted(float(n + 1) for n in range(60, 120))
    assert middle.latency_p50_ms is not None
    assert exact[29] / 1.1 <= middle.latency_p50_ms <= exact[29] * 1.1
    by_key = store.metrics(
        "ws", MetricsQuery(since, until, bucket_seconds=7200, group_by=("key_id",))
    )
    two_hours = 7200 * 10**9
    lo, hi = since - since % two_hours, -(-until // two_hours) * two_hours  # whole buckets
    fine = store.metrics("ws", MetricsQuery(lo, hi, bucket_seconds=60, group_by=("key_id",)))
    want: dict[tuple[int, str], int] = {}
    for p in fine:
        key = (p.bucket_ns - p.bucket_ns % two_hours, p.group["key_id"])
        want[key] = want.get(key, 0) + p.requests
    assert {(p.bucket_ns, p.group["key_id"]): p.requests for p in by_key} == want
    assert sum(want.values()) == 180
    one_key = store.metrics("ws", MetricsQuery(since, until, bucket_seconds=3600, key_id="k1"))
    assert {p.bucket_ns: p.requests for p in one_key} == expected(lambda n: n % 3 == 1)


def test_a_huge_input_is_stored_and_searched(store: TraceStore) -> None:
    words = " ".join(f"w{n}x{n * 7919 % 100003}" for n in range(40_000))  # ~500k chars
    assert store.write([mk(1, 0, input=words, output=words[::-1]), mk(2, 0, input="small")]) == 2
    assert ids(store, TraceQuery(text="w12x")) == []
    assert ids(store, TraceQuery(text=f"w12x{12 * 7919 % 100003}")) == [tid(1)]
    got = store.span("ws", tid(1), sid(1, 0))
    assert got is not None and got.input == words
    (summary, _) = store.traces("ws", TraceQuery()).items[::-1]
    assert summary.input == words[: fold.PREVIEW_CHARS]


def _hourly_spans(
    hour0: int, n: int = 240
) -> tuple[list[Span], dict[tuple[int, str], list[float]]]:
    spans, latencies = [], {}
    for j in range(n):
        hour, route = j % 2, ("r1", "r2")[j // 2 % 2]
        ms = 0.5 * 1.09 ** (j % 83)
        start = hour0 + hour * 60 * MINUTE + j * 10 * MS
        spans.append(
            mk(j, 1, at=start, end_ns=start + round(ms * MS), model="gpt", route=route, key_id="k")
        )
        latencies.setdefault((hour, route), []).append(round(ms * MS) / MS)
    return spans, latencies


def _check_hourly(
    store: TraceStore, hour0: int, latencies: dict[tuple[int, str], list[float]]
) -> None:
    query = MetricsQuery(
        hour0, hour0 + 2 * 60 * MINUTE, bucket_seconds=3600, group_by=("route", "model")
    )
    points = store.metrics("ws", query)
    assert len(points) == 4
    resolution = histogram.GROWTH**0.5 * 1.001
    for p in points:
        values = sorted(latencies[((p.bucket_ns - hour0) // (60 * MINUTE), p.group["route"])])
        assert p.requests == len(values)
        for q, got in ((0.5, p.latency_p50_ms), (0.9, p.latency_p90_ms), (0.99, p.latency_p99_ms)):
            exact = values[max(1, math.ceil(q * len(values))) - 1]
            assert got is not None and exact / resolution <= got <= exact * resolution
        assert p.ttft_p50_ms is None


def test_a_point_of_one_roll_up_row_reads_its_kept_percentiles(store: TraceStore) -> None:
    """Hourly by route and model: each point is one hourly row, read through the
    percentiles the row keeps (schema 2), the same figures the histograms give; written
    again (a second batch into the same hours), they are kept up to date."""
    hour0 = T0 - T0 % (60 * MINUTE) + 60 * MINUTE
    spans, latencies = _hourly_spans(hour0)
    store.write(spans[:100])
    store.write(spans[100:])
    _check_hourly(store, hour0, latencies)


def test_a_schema_1_store_is_upgraded_in_place(backend: str, store: TraceStore) -> None:
    """A store written before the kept percentiles (schema 1) gets the columns when it
    is opened, its hourly rows get them from their histograms, and new writes keep them
    up to date."""
    hour0 = T0 - T0 % (60 * MINUTE) + 60 * MINUTE
    spans, latencies = _hourly_spans(hour0)
    store.write(spans[:120])
    assert isinstance(store, SqliteTraceStore | PostgresTraceStore)
    with store._writing() as conn:
        for column in base.ROLLUP_PERCENTILES:
            conn.execute(f"ALTER TABLE trace_rollups DROP COLUMN {column}")
        conn.execute("UPDATE trace_store_meta SET value = '1' WHERE key = 'schema_version'")
    store.close()
    again = (
        SqliteTraceStore(store.path)
        if isinstance(store, SqliteTraceStore)
        else PostgresTraceStore(store._url)
    )
    try:
        with again._reading() as conn:
            (version,) = conn.execute(
                "SELECT value FROM trace_store_meta WHERE key = 'schema_version'"
            ).fetchone()
            assert int(version) == base.SCHEMA_VERSION
            kept = conn.execute(
                f"SELECT count(*) FROM trace_rollups WHERE {base.ROLLUP_PERCENTILES[0]} IS NULL"
            ).fetchone()
            assert kept[0] > 0  # the old minute rows: NULL until written again
            (hourly,) = conn.execute(
                f"SELECT count(*) FROM trace_rollups WHERE level != {base.BY_MINUTE} "
                f"AND {base.ROLLUP_PERCENTILES[0]} IS NULL"
            ).fetchone()
            assert hourly == 0  # the hourly rows: kept at the upgrade
        first = {k: v for k, v in latencies.items()}
        _, part = _hourly_spans(hour0, 120)
        _check_hourly(again, hour0, part)
        again.write(spans[120:])
        _check_hourly(again, hour0, first)
    finally:
        again.close()


def test_the_sqlite_wal_is_copied_back_off_the_writers_path(tmp_path: Path) -> None:
    """The writer commits and goes on; a thread of the store's own copies the WAL into
    the database file (the writer's own checkpoint is only a fallback, far later)."""
    path = tmp_path / "traces.db"
    store = open_store(f"sqlite:///{path}")
    try:
        before = path.stat().st_size
        store.write([mk(t, i, input="word " * 200) for t in range(200) for i in range(5)])
        deadline = time.monotonic() + 10
        while path.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size > before  # pages copied back from the WAL
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert conn.execute("SELECT count(*) FROM trace_spans").fetchone() == (1000,)
    finally:
        store.close()
    store.close()  # again: nothing
