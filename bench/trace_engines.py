"""Trace store engines side by side (prints figures; not a test): the workload of
bench/trace_store.py (5-span GenAI agent traces, ~15 attributes as JSON, 500-byte
inputs and outputs, batches of 512) on SQLite (Shipyard's store), DuckDB and chDB
(embedded ClickHouse), each in a process of its own, with the same two tables:
trace_spans and trace_summaries (a summary per trace kept current on every batch).

    .venv/bin/python bench/trace_engines.py                       # 1,000,000 spans, all three
    .venv/bin/python bench/trace_engines.py --spans 100000 --engines duckdb,chdb

DuckDB and chDB are not Shipyard dependencies: they run under the interpreter of
`--python` (default /root/.cache/engines-venv/bin/python), which this script re-executes
itself under for `--engine duckdb|chdb`.

How each keeps summaries current:
- SQLite: Shipyard's store (reads the batch's stored summaries, folds in Python,
  upserts; it also keeps session totals and per-minute roll-ups, which the others skip).
- DuckDB: one INSERT ... SELECT ... GROUP BY trace_id ... ON CONFLICT DO UPDATE per batch
  (primary keys on both tables, INSERT OR IGNORE for spans as SQLite's UNIQUE does).
- chDB: trace_summaries is an AggregatingMergeTree (min/max/sum as
  SimpleAggregateFunction, first-seen and root-span columns as argMin states); a batch
  inserts its partial aggregate and merges fold them; queries GROUP BY trace_id.

Measured: ingest spans/s (the batch's conversion included, generation not), the trace
list with two filters (model + errors, route + model; newest 50), full text for a rare
word (FTS5 / ILIKE / tokenbf_v1 + hasToken), the dashboard (24 h by hour and model:
requests, errors, latency p50/p90/p99, tokens, cost; SQLite from its roll-ups, the
others from raw spans), disk size, peak RSS, cold open in a fresh process, and what a
second process gets when it opens the same store while the first one writes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src")]

import trace_store  # noqa: E402  # the generator: the same spans as bench/trace_store.py

from shipyard.tracing.spans import Span  # noqa: E402

ENGINES_PYTHON = "/root/.cache/engines-venv/bin/python"
WS = trace_store.WS
DAY_NS = 24 * 3600 * 10**9
HOUR_NS = 3600 * 10**9
SPAN_COLS = (
    "workspace_id",
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status",
    "status_message",
    "service",
    "operation",
    "model",
    "provider",
    "route",
    "key_id",
    "user_id",
    "session_id",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "ttft_ms",
    "input",
    "output",
    "attributes",
    "events",
    "resource",
)
SUMMARY_COLS = (
    "workspace_id",
    "trace_id",
    "name",
    "start_ns",
    "end_ns",
    "span_count",
    "error_count",
    "service",
    "model",
    "route",
    "key_id",
    "user_id",
    "session_id",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "input",
    "output",
)
INHERITED = ("service", "model", "route", "key_id", "user_id", "session_id")


try:
    import orjson

    def _json(value: object) -> str:
        return orjson.dumps(value).decode()
except ImportError:  # the engines' interpreter may lack it: slower, same text

    def _json(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))


def _columns(batch: list[Span]) -> dict[str, list[Any]]:
    """A batch as columns (JSON fields as text), what an arrow table is built from."""
    out: dict[str, list[Any]] = {c: [getattr(s, c) for s in batch] for c in SPAN_COLS}
    for c in ("attributes", "events", "resource"):
        out[c] = [_json(v) for v in out[c]]
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time(fn: Callable[[int], object], runs: int) -> tuple[float, float]:
    took = []
    for i in range(runs):
        begin = time.perf_counter()
        fn(i)
        took.append((time.perf_counter() - begin) * 1000)
    return round(statistics.median(took), 1), round(_p(took, 0.95), 1)


def _q(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- the engines --------------------------------------------------------------------------


class Engine:
    """One store on one path: open, write a batch, the three queries, close."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, batch: list[Span]) -> None:
        raise NotImplementedError

    def list_two(self, model: str, route: str | None, errors: bool) -> list[Any]:
        raise NotImplementedError

    def text(self, word: str) -> list[Any]:
        raise NotImplementedError

    def dashboard(self, since: int, until: int) -> list[Any]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def latest(self) -> int:
        """The newest span's start: the dashboard reads the 24 h before it."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def size(self) -> int:
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))


class Sqlite(Engine):
    def __init__(self, path: Path, read_only: bool = False) -> None:
        super().__init__(path)
        from shipyard.tracing.store import open_store

        self.store = open_store(f"sqlite:///{path}")

    def write(self, batch: list[Span]) -> None:
        self.store.write(batch)

    def list_two(self, model: str, route: str | None, errors: bool) -> list[Any]:
        from shipyard.tracing.spans import TraceQuery

        query = TraceQuery(model=model, route=route, status="error" if errors else None)
        return self.store.traces(WS, query).items

    def text(self, word: str) -> list[Any]:
        from shipyard.tracing.spans import TraceQuery

        return self.store.traces(WS, TraceQuery(text=word)).items

    def dashboard(self, since: int, until: int) -> list[Any]:
        from shipyard.tracing.spans import MetricsQuery

        return self.store.metrics(
            WS, MetricsQuery(since, until, bucket_seconds=3600, group_by=("model",))
        )

    def count(self) -> int:
        import sqlite3

        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM trace_spans").fetchone()[0])

    def latest(self) -> int:
        import sqlite3

        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT max(start_ns) FROM trace_spans").fetchone()[0])

    def close(self) -> None:
        self.store.close()


DUCK_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS trace_spans ("
    " workspace_id VARCHAR NOT NULL, trace_id VARCHAR NOT NULL, span_id VARCHAR NOT NULL,"
    " parent_id VARCHAR NOT NULL, name VARCHAR NOT NULL, kind VARCHAR NOT NULL,"
    " start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, status VARCHAR NOT NULL,"
    " status_message VARCHAR NOT NULL, service VARCHAR NOT NULL, operation VARCHAR NOT NULL,"
    " model VARCHAR NOT NULL, provider VARCHAR NOT NULL, route VARCHAR NOT NULL,"
    " key_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL,"
    " input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, cost_usd DOUBLE NOT NULL,"
    " ttft_ms DOUBLE, input VARCHAR NOT NULL, output VARCHAR NOT NULL,"
    " attributes JSON NOT NULL, events JSON NOT NULL, resource JSON NOT NULL,"
    " PRIMARY KEY (workspace_id, trace_id, span_id))",
    "CREATE TABLE IF NOT EXISTS trace_summaries ("
    " workspace_id VARCHAR NOT NULL, trace_id VARCHAR NOT NULL, name VARCHAR NOT NULL,"
    " start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, span_count BIGINT NOT NULL,"
    " error_count BIGINT NOT NULL, service VARCHAR NOT NULL, model VARCHAR NOT NULL,"
    " route VARCHAR NOT NULL, key_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL,"
    " session_id VARCHAR NOT NULL, input_tokens BIGINT NOT NULL,"
    " output_tokens BIGINT NOT NULL, cost_usd DOUBLE NOT NULL, input VARCHAR NOT NULL,"
    " output VARCHAR NOT NULL, has_root BOOLEAN NOT NULL,"
    " PRIMARY KEY (workspace_id, trace_id))",
)

_FIRST = ", ".join(
    f"coalesce(arg_min({c}, start_ns) FILTER (WHERE {c} <> ''), '')" for c in INHERITED
)
_HEAD = "arg_min({c}, (parent_id <> '', start_ns))"
_TAKE_HEAD = (
    "CASE WHEN s.has_root THEN s.{c} WHEN excluded.has_root "
    "OR excluded.start_ns < s.start_ns THEN excluded.{c} ELSE s.{c} END"
)
DUCK_UPSERT = (
    "INSERT INTO trace_summaries AS s SELECT workspace_id, trace_id, "
    f"{_HEAD.format(c='name')}, min(start_ns), max(end_ns), count(*), "
    f"count_if(status = 'error'), {_FIRST}, sum(input_tokens), sum(output_tokens), "
    f"sum(cost_usd), left({_HEAD.format(c='input')}, 500), "
    f"left({_HEAD.format(c='output')}, 500), bool_or(parent_id = '') "
    "FROM batch GROUP BY workspace_id, trace_id "
    "ON CONFLICT (workspace_id, trace_id) DO UPDATE SET "
    + ", ".join(
        [
            *(f"{c} = {_TAKE_HEAD.format(c=c)}" for c in ("name", "input", "output")),
            "start_ns = least(s.start_ns, excluded.start_ns)",
            "end_ns = greatest(s.end_ns, excluded.end_ns)",
            *(
                f"{c} = s.{c} + excluded.{c}"
                for c in ("span_count", "error_count", "input_tokens", "output_tokens")
            ),
            "cost_usd = s.cost_usd + excluded.cost_usd",
            *(f"{c} = CASE WHEN s.{c} <> '' THEN s.{c} ELSE excluded.{c} END" for c in INHERITED),
            "has_root = s.has_root OR excluded.has_root",
        ]
    )
)


class Duck(Engine):
    def __init__(self, path: Path, read_only: bool = False) -> None:
        super().__init__(path)
        import duckdb

        self.db = duckdb.connect(str(path), read_only=read_only)
        if not read_only:
            for ddl in DUCK_SCHEMA:
                self.db.execute(ddl)

    def write(self, batch: list[Span]) -> None:
        import pyarrow as pa

        table = pa.table(_columns(batch))
        db = self.db
        db.register("batch", table)
        db.execute("BEGIN")
        db.execute("INSERT OR IGNORE INTO trace_spans SELECT * FROM batch")
        db.execute(DUCK_UPSERT)
        db.execute("COMMIT")
        db.unregister("batch")

    def list_two(self, model: str, route: str | None, errors: bool) -> list[Any]:
        where = "workspace_id = ? AND model = ?"
        params: list[object] = [WS, model]
        if route is not None:
            where += " AND route = ?"
            params.append(route)
        if errors:
            where += " AND error_count > 0"
        return self.db.execute(
            f"SELECT {', '.join(SUMMARY_COLS)} FROM trace_summaries WHERE {where} "
            "ORDER BY start_ns DESC, trace_id DESC LIMIT 51",
            params,
        ).fetchall()

    def text(self, word: str) -> list[Any]:
        like = f"%{word} %"
        return self.db.execute(
            f"SELECT {', '.join(SUMMARY_COLS)} FROM trace_summaries WHERE workspace_id = ? "
            "AND trace_id IN (SELECT trace_id FROM trace_spans WHERE workspace_id = ? "
            "AND (input ILIKE ? OR output ILIKE ?)) "
            "ORDER BY start_ns DESC, trace_id DESC LIMIT 51",
            [WS, WS, like, like],
        ).fetchall()

    def dashboard(self, since: int, until: int) -> list[Any]:
        return self.db.execute(
            f"SELECT start_ns // {HOUR_NS} AS hour, model, count(*), "
            "count_if(status = 'error'), "
            "quantile_cont((end_ns - start_ns) / 1e6, [0.5, 0.9, 0.99]), "
            "sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM trace_spans "
            "WHERE workspace_id = ? AND start_ns >= ? AND start_ns < ? AND model <> '' "
            "GROUP BY ALL ORDER BY ALL",
            [WS, since, until],
        ).fetchall()

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM trace_spans").fetchone()[0])

    def latest(self) -> int:
        return int(self.db.execute("SELECT max(start_ns) FROM trace_spans").fetchone()[0])

    def close(self) -> None:
        self.db.close()


CH_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS trace_spans ("
    " workspace_id LowCardinality(String), trace_id String, span_id String,"
    " parent_id String, name LowCardinality(String), kind LowCardinality(String),"
    " start_ns Int64, end_ns Int64, status LowCardinality(String), status_message String,"
    " service LowCardinality(String), operation LowCardinality(String),"
    " model LowCardinality(String), provider LowCardinality(String),"
    " route LowCardinality(String), key_id LowCardinality(String), user_id String,"
    " session_id String, input_tokens UInt32, output_tokens UInt32, cost_usd Float64,"
    " ttft_ms Nullable(Float64), input String, output String, attributes String,"
    " events String, resource String,"
    " INDEX ix_trace trace_id TYPE bloom_filter(0.01) GRANULARITY 1,"
    " INDEX ix_input input TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1,"
    " INDEX ix_output output TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1"
    ") ENGINE = MergeTree ORDER BY (workspace_id, start_ns)",
    "CREATE TABLE IF NOT EXISTS trace_summaries ("
    " workspace_id LowCardinality(String), trace_id String,"
    " name AggregateFunction(argMin, String, Tuple(UInt8, Int64)),"
    " start_ns SimpleAggregateFunction(min, Int64),"
    " end_ns SimpleAggregateFunction(max, Int64),"
    " span_count SimpleAggregateFunction(sum, UInt64),"
    " error_count SimpleAggregateFunction(sum, UInt64),"
    + "".join(f" {c} AggregateFunction(argMin, String, Int64)," for c in INHERITED)
    + " input_tokens SimpleAggregateFunction(sum, UInt64),"
    " output_tokens SimpleAggregateFunction(sum, UInt64),"
    " cost_usd SimpleAggregateFunction(sum, Float64),"
    " input AggregateFunction(argMin, String, Tuple(UInt8, Int64)),"
    " output AggregateFunction(argMin, String, Tuple(UInt8, Int64)),"
    " has_root SimpleAggregateFunction(max, UInt8)"
    ") ENGINE = AggregatingMergeTree ORDER BY (workspace_id, trace_id)",
)
_CH_HEAD = "argMinState({c}, (toUInt8(parent_id != ''), start_ns))"
CH_SUMMARY_INSERT = (
    "INSERT INTO trace_summaries SELECT workspace_id, trace_id, "
    f"{_CH_HEAD.format(c='name')}, min(start_ns), max(end_ns), count(), "
    "countIf(status = 'error'), "
    + "".join(f"argMinState({c}, if({c} = '', {2**62}, start_ns)), " for c in INHERITED)
    + "sum(input_tokens), sum(output_tokens), sum(cost_usd), "
    f"{_CH_HEAD.format(c='substring(input, 1, 500)')}, "
    f"{_CH_HEAD.format(c='substring(output, 1, 500)')}, max(toUInt8(parent_id = '')) "
    "FROM (SELECT "
    + ", ".join(
        f"assumeNotNull({c}) AS {c}"
        for c in SPAN_COLS
        if c not in ("ttft_ms", "attributes", "events", "resource", "kind", "status_message")
    )
    + " FROM Python(shipyard_arrow_batch)) GROUP BY workspace_id, trace_id"
)
_CH_FINAL = (
    "trace_id, argMinMerge(name) AS name_, min(start_ns) AS start_, max(end_ns) AS end_, "
    "sum(span_count) AS spans_, sum(error_count) AS errors_, "
    + "".join(f"argMinMerge({c}) AS {c}_, " for c in INHERITED)
    + "sum(input_tokens) AS in_, sum(output_tokens) AS out_, sum(cost_usd) AS cost_"
)


class Chdb(Engine):
    def __init__(self, path: Path, read_only: bool = False) -> None:
        super().__init__(path)
        from chdb import session

        self.db = session.Session(str(path))
        for ddl in CH_SCHEMA:
            self.db.query(ddl)

    def _rows(self, sql: str) -> list[Any]:
        out = self.db.query(sql, "JSONCompact")
        return list(json.loads(out.bytes() or b'{"data": []}')["data"])

    def write(self, batch: list[Span]) -> None:
        import pyarrow as pa

        # (Python() reads every column as Nullable: the summary insert takes them out)
        # Python(name) finds the table by name in the caller's frames or globals
        globals()["shipyard_arrow_batch"] = pa.table(_columns(batch))
        self.db.query("INSERT INTO trace_spans SELECT * FROM Python(shipyard_arrow_batch)")
        self.db.query(CH_SUMMARY_INSERT)
        del globals()["shipyard_arrow_batch"]

    def _page(self, having: str, where_ids: str = "") -> list[Any]:
        # the newest 51 trace ids first (no input/output merged), then their previews
        ids = self._rows(
            f"SELECT trace_id, min(start_ns) AS start_, sum(error_count) AS errors_, "
            f"argMinMerge(model) AS model_, argMinMerge(route) AS route_ "
            f"FROM trace_summaries WHERE workspace_id = {_q(WS)} {where_ids} "
            f"GROUP BY trace_id {having} ORDER BY start_ DESC, trace_id DESC LIMIT 51"
        )
        if not ids:
            return []
        listed = ", ".join(_q(row[0]) for row in ids)
        return self._rows(
            f"SELECT {_CH_FINAL}, argMinMerge(input), argMinMerge(output) "
            f"FROM trace_summaries WHERE workspace_id = {_q(WS)} AND trace_id IN ({listed}) "
            "GROUP BY trace_id ORDER BY start_ DESC, trace_id DESC"
        )

    def list_two(self, model: str, route: str | None, errors: bool) -> list[Any]:
        having = f"HAVING model_ = {_q(model)}"
        if route is not None:
            having += f" AND route_ = {_q(route)}"
        if errors:
            having += " AND errors_ > 0"
        return self._page(having)

    def text(self, word: str) -> list[Any]:
        w = _q(word)
        return self._page(
            "",
            f"AND trace_id IN (SELECT trace_id FROM trace_spans WHERE workspace_id = {_q(WS)} "
            f"AND (hasToken(input, {w}) OR hasToken(output, {w})))",
        )

    def dashboard(self, since: int, until: int) -> list[Any]:
        return self._rows(
            f"SELECT intDiv(start_ns, {HOUR_NS}) AS hour, model, count(), "
            "countIf(status = 'error'), "
            "quantiles(0.5, 0.9, 0.99)((end_ns - start_ns) / 1e6), "
            "sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM trace_spans "
            f"WHERE workspace_id = {_q(WS)} AND start_ns >= {int(since)} "
            f"AND start_ns < {int(until)} AND model != '' "
            "GROUP BY hour, model ORDER BY hour, model"
        )

    def count(self) -> int:
        return int(self._rows("SELECT count() FROM trace_spans")[0][0])

    def latest(self) -> int:
        return int(self._rows("SELECT max(start_ns) FROM trace_spans")[0][0])

    def close(self) -> None:
        self.db.close()


ENGINES: dict[str, type[Engine]] = {"sqlite": Sqlite, "duckdb": Duck, "chdb": Chdb}


def _store_path(engine: str, root: Path) -> Path:
    return root / {"sqlite": "traces.db", "duckdb": "traces.duckdb", "chdb": "traces.chdb"}[engine]


# --- one engine, in its own process -------------------------------------------------------


def _second(engine: str, path: Path) -> dict[str, Any]:
    """What a second process gets on the store the first one is writing: open it to
    write, write a batch, read; then open it read-only."""
    out: dict[str, Any] = {}
    batch = next(trace_store.traces(512, seed=99))
    begin = time.perf_counter()
    try:
        store = ENGINES[engine](path)
        out["open_rw"] = f"ok in {time.perf_counter() - begin:.2f} s"
        begin = time.perf_counter()
        store.write(batch)
        out["write"] = f"ok in {time.perf_counter() - begin:.2f} s"
        out["read"] = f"ok: {store.count()} rows"
        store.close()
    except Exception as exc:
        took = time.perf_counter() - begin
        out["rw_error"] = f"{type(exc).__name__} after {took:.2f} s: {str(exc)[:160]}"
    if engine == "duckdb":
        begin = time.perf_counter()
        try:
            store = Duck(path, read_only=True)
            out["open_ro"] = f"ok: {store.count()} rows"
            store.close()
        except Exception as exc:
            took = time.perf_counter() - begin
            out["ro_error"] = f"{type(exc).__name__} after {took:.2f} s: {str(exc)[:160]}"
    return out


def _two_processes(engine: str, root: Path) -> dict[str, Any]:
    """The first process (this one) writes batches while a second opens the store."""
    path = _store_path(engine, root / "shared")
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ENGINES[engine](path)
    batches = trace_store.traces(512 * 400, seed=5)
    store.write(next(batches))
    child = subprocess.Popen(
        [sys.executable, __file__, "--second", engine, "--path", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wrote = 1
    stalls = 0.0
    deadline = time.monotonic() + 60
    while child.poll() is None:
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            store.close()
            return {"blocked": "the second process was still waiting after 60 s"}
        begin = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            time.sleep(0.05)
            continue
        store.write(batch)
        wrote += 1
        stalls = max(stalls, time.perf_counter() - begin)
    result = json.loads(child.stdout.read() if child.stdout else "{}")
    result["first_wrote_batches"] = wrote
    result["first_slowest_batch_s"] = round(stalls, 2)
    store.close()
    return result


def run_engine(
    engine: str, spans: int, root: Path, fill_s: float, reuse: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine, "spans": spans}
    path = _store_path(engine, root)
    if reuse:  # the store at root is filled already: the queries alone
        store = ENGINES[engine](path)
        out["spans"] = store.count()
        return _queries(engine, store, path, out)
    out["two_processes"] = _two_processes(engine, root)
    print(f"[{engine}] two processes: {out['two_processes']}", file=sys.stderr, flush=True)
    store = ENGINES[engine](path)
    spent = 0.0
    wrote = 0
    for i, batch in enumerate(trace_store.traces(spans)):
        begin = time.perf_counter()
        store.write(batch)
        spent += time.perf_counter() - begin
        wrote += len(batch)
        if spent > fill_s:  # out of time: the queries run over what is stored
            print(f"[{engine}] stopped filling at {wrote:,} spans", file=sys.stderr)
            break
        if i and i % 400 == 0:
            print(f"[{engine}] {wrote:,} spans {wrote / spent:,.0f}/s", file=sys.stderr, flush=True)
    out["spans"] = wrote
    out["ingest_spans_s"] = round(wrote / spent)
    out["rss_after_ingest_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return _queries(engine, store, path, out)


def _queries(engine: str, store: Engine, path: Path, out: dict[str, Any]) -> dict[str, Any]:
    models, routes = trace_store.MODELS[:3], trace_store.ROUTES  # summary model: a chat model
    now = store.latest() + 1  # a fill stopped early ends before the clock

    def two(i: int) -> object:
        if i % 2:
            return store.list_two(models[i % 3], None, True)
        return store.list_two(models[i % 3], routes[i % 8], False)

    def text(i: int) -> object:
        return store.text(f"ref{(i * 37) % 4000}")

    got = store.list_two(models[0], None, True)
    assert got, "the two-filter list found nothing"
    assert store.text("ref17"), "full text found nothing"
    assert store.dashboard(now - DAY_NS, now), "the dashboard found nothing"
    out["list_two_p50_ms"], out["list_two_p95_ms"] = _time(two, 100)
    out["text_p50_ms"], out["text_p95_ms"] = _time(text, 40)
    out["dash_p50_ms"], out["dash_p95_ms"] = _time(lambda i: store.dashboard(now - DAY_NS, now), 20)
    out["rss_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    store.close()
    out["disk_mb"] = round(Engine(path).size() / 2**20)
    opened = subprocess.run(
        [sys.executable, __file__, "--cold", engine, "--path", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    out.update(json.loads(opened.stdout))
    return out


def _cold(engine: str, path: Path) -> dict[str, Any]:
    begin = time.perf_counter()
    if engine == "duckdb":
        import duckdb  # noqa: F401
    elif engine == "chdb":
        import chdb  # noqa: F401
    else:
        import shipyard.tracing.store.sqlite  # noqa: F401
    imported = time.perf_counter()
    store = ENGINES[engine](path)
    store.list_two(trace_store.MODELS[0], None, True)
    done = time.perf_counter()
    store.close()
    return {"import_s": round(imported - begin, 2), "cold_open_s": round(done - imported, 2)}


# --- the driver -----------------------------------------------------------------------------


ROWS = (
    ("ingest, spans/s (summaries kept)", "ingest_spans_s"),
    ("trace list, 2 filters, p50 ms", "list_two_p50_ms"),
    ("trace list, 2 filters, p95 ms", "list_two_p95_ms"),
    ("full text, rare word, p95 ms", "text_p95_ms"),
    ("dashboard 24 h x model, p95 ms", "dash_p95_ms"),
    ("disk, MiB", "disk_mb"),
    ("peak RSS, MiB", "rss_peak_mb"),
    ("import, s", "import_s"),
    ("cold open + first list, s", "cold_open_s"),
)


def _python_for(engine: str, given: str | None) -> str:
    if engine == "sqlite":
        return sys.executable
    return given or ENGINES_PYTHON


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,duckdb,chdb")
    parser.add_argument("--engine", help="run one engine in this process (prints JSON)")
    parser.add_argument("--python", help=f"interpreter with duckdb and chdb ({ENGINES_PYTHON})")
    parser.add_argument(
        "--fill-seconds", type=float, default=1e9, help="stop filling after this long"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="with --engine and --root: query the filled store"
    )
    parser.add_argument("--root", help="directory for the stores (default: a temporary one)")
    parser.add_argument("--second", help=argparse.SUPPRESS)
    parser.add_argument("--cold", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.second:
        print(json.dumps(_second(args.second, Path(args.path))))
        return 0
    if args.cold:
        print(json.dumps(_cold(args.cold, Path(args.path))))
        return 0
    if args.engine:
        python = _python_for(args.engine, args.python)
        if args.engine != "sqlite" and Path(sys.executable) != Path(python):
            os.execv(python, [python, __file__, *sys.argv[1:]])
        root = Path(args.root or tempfile.mkdtemp(prefix="shipyard-engines-"))
        try:
            print(
                json.dumps(run_engine(args.engine, args.spans, root, args.fill_seconds, args.reuse))
            )
        finally:
            if not args.root:
                shutil.rmtree(root, ignore_errors=True)
        return 0
    results: list[dict[str, Any]] = []
    for engine in args.engines.split(","):
        if engine not in ENGINES:
            print(f"unknown engine {engine!r}", file=sys.stderr)
            return 2
        cmd = [_python_for(engine, args.python), __file__, "--engine", engine]
        cmd += ["--spans", str(args.spans), "--fill-seconds", str(args.fill_seconds)]
        print(f"== {engine}: {args.spans:,} spans (load {os.getloadavg()[0]:.1f})", flush=True)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    load = os.getloadavg()
    print(f"\n{args.spans:,} spans; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'':<36}" + "".join(f"{r['engine']:>12}" for r in results))
    print(f"{'spans stored':<36}" + "".join(f"{r['spans']:>12,}" for r in results))
    for label, key in ROWS:
        print(f"{label:<36}" + "".join(f"{r.get(key, '-'):>12}" for r in results))
    for r in results:
        print(f"two processes, {r['engine']}: {r.get('two_processes', '-')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
