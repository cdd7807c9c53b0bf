"""What both engines share: the tables' columns, the schema version, and the SQL that
reads the same on SQLite and PostgreSQL, for writing (a batch's new spans folded into
trace summaries, session totals and roll-ups by `fold.py`, then upserted) and for every
query. Rows and cursors are `rows.py`'s.

Tables (the trace store creates and versions them itself; see `SCHEMA_VERSION`):

    trace_spans       one row per span, unique (workspace_id, trace_id, span_id)
    trace_summaries   one row per trace (`TraceSummary`), upserted per batch
    trace_sessions    one row per (workspace, session): totals over its traces
    trace_rollups     LLM spans only, at three levels: per minute x (workspace, route,
                      model, key_id), per hour x the same, per hour x (workspace,
                      route, model); sums, latency/TTFT histograms and each row's
                      own p50/p90/p99 (schema 2); purge leaves them. A dashboard over
                      hours reads the hourly rows (and minutes at its ragged edges): a
                      week of 1M spans is thousands of rows, not the hundreds of
                      thousands of minute rows; a point that is one row (hourly, by
                      route and model) is read without decoding its histograms
    trace_store_meta  key/value: the schema version (`record_version` upgrades an
                      older store when it is opened)

The names carry a `trace_` prefix because the trace store may share the metadata
PostgreSQL database. Writes come from one writer per store (PostgreSQL: serialized by an
advisory lock, so replicas may share a database), so reading the stored rows and
upserting the merged ones inside the write transaction is safe.

What a trace list costs. Every list walks an index of trace_summaries in start order
(newest first) and stops at the page: (workspace, start) alone, or (workspace, route |
model | key | user | session | service, start), or the partial index of errored traces;
the engine picks one equality filter's index and checks the others row by row, so two
filters cost the rows of the first one until a page matches. Range filters (time is the
index's own; duration, cost, tokens) and `status="ok"` are checked on the walk: cheap
when they match often, a walk over the workspace's traces when they match almost
nothing. The attribute filter looks at the spans of each trace on the walk (by the
(workspace, trace) index, JSON read per span): bounded by the other filters and the
page, a long walk for a rare value with no other filter. Full text first asks the text
index for the matching traces (up to TEXT_LIST + 1): when that many match, the walk
checks each trace's spans against the text index instead (a common word: the walk stops
soon); when fewer, they are looked up by id and sorted, with no walk. The cursor is
(start, trace id) of the last row: rows inserted above it never shift a page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from operator import attrgetter, itemgetter
from typing import Any

import orjson

from shipyard.errors import ConfigError, InvalidInput
from shipyard.tracing.spans import (
    MetricPoint,
    MetricsQuery,
    Page,
    SessionSummary,
    Span,
    TraceQuery,
    TraceSummary,
)
from shipyard.tracing.store import histogram
from shipyard.tracing.store.fold import (
    INHERITED,
    ROLLUP_SUMS,
    TRACE_COLUMNS,
    Rollup,
    SessionDelta,
    add_to,
    fold,
    session_delta,
)
from shipyard.tracing.store.rows import (
    SPAN_COLUMNS,
    decode_cursor,
    encode_cursor,
    integer,
    page_limit,
    prepare,
    real,
    span_from_row,
    text,
)

SCHEMA_VERSION = 2  # 2: trace_rollups keeps each row's latency and TTFT percentiles
MINUTE_NS = 60_000_000_000
MAX_TRACES_PAGE = 500
MAX_SPANS_PAGE = 5000
MAX_SESSIONS_PAGE = 500
PURGE_TRACES = 500  # traces per purge transaction
PURGE_SPANS = 5000  # spans per purge transaction
_QUANTILES = (0.5, 0.9, 0.99)
TEXT_LIST = 2000  # full text matching at most this many traces looks them up by id
_WORD = re.compile(r"[^\W_]+")

Conn = Any  # a sqlite3.Connection or a psycopg.Connection: both have .execute()

SESSION_COLUMNS = tuple(f.name for f in fields(SessionSummary))
ROLLUP_KEY = ("workspace_id", "level", "minute", "route", "model", "key_id")
BY_MINUTE, BY_HOUR, BY_HOUR_NO_KEY = 0, 1, 2  # roll-up levels; `minute` starts the hour
# each row's p50/p90/p99, kept beside its histograms: a point made of one row (hourly,
# by route and model) is read without decoding a histogram. NULL in rows written before
# schema 2 (then read from the histograms)
ROLLUP_PERCENTILES = tuple(f"{m}_p{q}" for m in ("latency", "ttft") for q in (50, 90, 99))
ROLLUP_COLUMNS = (*ROLLUP_KEY, *ROLLUP_SUMS, "latency_hist", "ttft_hist", *ROLLUP_PERCENTILES)
_LATENCY_AT = len(ROLLUP_SUMS)  # in a roll-up's values (the columns after the key)
_TTFT_HIST_AT = _LATENCY_AT + 1
GROUPS = ("route", "model", "key_id")
_TRACE_STORED = (*TRACE_COLUMNS, "has_root")
_TRACE_GET = attrgetter(*TRACE_COLUMNS)

# the indexes both engines build (name, table, columns[, WHERE])
INDEXES: tuple[tuple[str, str, str, str], ...] = (
    ("ix_trace_spans_order", "trace_spans", "workspace_id, trace_id, start_ns, span_id", ""),
    ("ix_trace_summaries_start", "trace_summaries", "workspace_id, start_ns, trace_id", ""),
    *(
        (
            f"ix_trace_summaries_{column}",
            "trace_summaries",
            f"workspace_id, {column}, start_ns, trace_id",
            "",
        )
        for column in ("route", "model", "key_id", "user_id", "session_id", "service")
    ),
    (
        "ix_trace_summaries_errors",
        "trace_summaries",
        "workspace_id, start_ns, trace_id",
        "error_count > 0",
    ),
    ("ix_trace_sessions_end", "trace_sessions", "workspace_id, end_ns, session_id", ""),
    (
        "ix_trace_sessions_user",
        "trace_sessions",
        "workspace_id, user_id, end_ns, session_id",
        "",
    ),
    ("ix_trace_rollups_minute", "trace_rollups", "level, minute", ""),
)


Upgrade = str | Callable[[Conn], None]  # a statement, or a step written in Python


def record_version(
    conn: Conn, mark: str, upgrades: Mapping[int, Sequence[Upgrade]], where: str
) -> None:
    """After the CREATE ... IF NOT EXISTS of the schema (a new store gets every column
    at once): record the schema version of a new store, or bring an older store's up
    to it (`upgrades[v]`: the statements from version v to v + 1), or refuse a store
    a newer Shipyard wrote. In the migration's transaction."""
    row = conn.execute("SELECT value FROM trace_store_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute(
            f"INSERT INTO trace_store_meta VALUES ('schema_version', {mark})",
            (str(SCHEMA_VERSION),),
        )
        return
    found = int(row[0])
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"{where}trace store schema {found} is newer than this Shipyard's ({SCHEMA_VERSION})"
        )
    for version in range(found, SCHEMA_VERSION):
        for step in upgrades.get(version, ()):
            if isinstance(step, str):
                conn.execute(step)
            else:
                step(conn)
    if found < SCHEMA_VERSION:
        conn.execute(
            f"UPDATE trace_store_meta SET value = {mark} WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION),),
        )


def index_ddl() -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"
        + (f" WHERE {where}" if where else "")
        for name, table, columns, where in INDEXES
    ]


class SqlTraceStore:
    """The engine-neutral half of a trace store. An engine provides the connections
    (`_writing`: one transaction on the writer's connection; `_reading`: a reader's
    connection), the span insert that tells new spans from stored ones, the text and
    attribute clauses, and span deletion (with its text index rows)."""

    mark = "?"
    least = "MIN"
    greatest = "MAX"
    no_index = ""  # put before a column to keep the planner off its indexes

    def __init__(self) -> None:
        self._trace_tail = "ON CONFLICT (workspace_id, trace_id) DO UPDATE SET " + ", ".join(
            f"{c} = excluded.{c}" for c in _TRACE_STORED[2:]
        )
        t = "trace_sessions"
        self._session_tail = (
            "ON CONFLICT (workspace_id, session_id) DO UPDATE SET "
            f"trace_count = {t}.trace_count + excluded.trace_count, "
            f"start_ns = {self.least}({t}.start_ns, excluded.start_ns), "
            f"end_ns = {self.greatest}({t}.end_ns, excluded.end_ns), "
            f"user_id = CASE WHEN {t}.user_id = '' THEN excluded.user_id "
            f"ELSE {t}.user_id END, "
            + ", ".join(
                f"{c} = {t}.{c} + excluded.{c}"
                for c in ("input_tokens", "output_tokens", "cost_usd", "error_count")
            )
        )
        self._rollup_tail = f"ON CONFLICT ({', '.join(ROLLUP_KEY)}) DO UPDATE SET " + ", ".join(
            f"{c} = excluded.{c}" for c in ROLLUP_COLUMNS[len(ROLLUP_KEY) :]
        )
        self._span_cols = ", ".join(f"s.{c}" for c in SPAN_COLUMNS)
        self._trace_cols = ", ".join(f"t.{c}" for c in TRACE_COLUMNS)

    # --- what an engine provides -------------------------------------------------------

    def _writing(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _insert_spans(self, conn: Conn, rows: list[tuple[Span, tuple[object, ...]]]) -> list[Span]:
        raise NotImplementedError

    def _executemany(self, conn: Conn, sql: str, rows: list[tuple[object, ...]]) -> None:
        raise NotImplementedError

    def _insert_rows(
        self,
        conn: Conn,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[object, ...]],
        tail: str = "",
    ) -> None:
        """`INSERT INTO table (columns) <rows> tail` in as few round trips as the engine
        allows (rows unique by the conflict key)."""
        raise NotImplementedError

    def _in(self, column: str, values: Sequence[object]) -> tuple[str, list[object]]:
        """`column IN (values)` for this engine."""
        raise NotImplementedError

    def _text_clause(self, workspace_id: str, tokens: list[str]) -> tuple[str, list[object]]:
        """A condition on `t` (trace_summaries): some span of the trace holds every
        token in its input or output (used when more than TEXT_LIST traces match)."""
        raise NotImplementedError

    def _text_traces(
        self, conn: Conn, workspace_id: str, tokens: list[str], most: int
    ) -> list[str] | None:
        """The traces with a span holding every token; None when `most` or more do."""
        raise NotImplementedError

    def _attribute_clause(self, key: str, value: str) -> tuple[str, list[object]]:
        raise NotImplementedError

    def _delete_spans(self, conn: Conn, workspace_id: str, trace_ids: list[str]) -> int:
        """Delete up to PURGE_SPANS spans of these traces (and their text rows)."""
        raise NotImplementedError

    # --- writing -----------------------------------------------------------------------

    def write(self, spans: Sequence[Span]) -> int:
        if not spans:
            return 0
        prepared: dict[tuple[str, str, str], tuple[Span, tuple[object, ...]]] = {}
        shared: dict[int, tuple[object, str]] = {}  # held: keeps every id in it alive
        for span in spans:
            clean, row = prepare(span, shared)
            prepared.setdefault((clean.workspace_id, clean.trace_id, clean.span_id), (clean, row))
        with self._writing() as conn:
            new = self._insert_spans(conn, list(prepared.values()))
            if new:
                self._summarize(conn, new)
        return len(new)

    def _summarize(self, conn: Conn, new: list[Span]) -> None:
        by_trace: dict[tuple[str, str], list[Span]] = {}
        for span in sorted(new, key=lambda s: s.start_ns):
            by_trace.setdefault((span.workspace_id, span.trace_id), []).append(span)
        stored = self._stored_traces(conn, list(by_trace))
        trace_rows: list[tuple[object, ...]] = []
        sessions: dict[tuple[str, str], SessionDelta] = {}
        for key, batch in by_trace.items():
            old, has_root = stored.get(key, (None, False))
            row, has_root = fold(old, has_root, batch)
            trace_rows.append((*_TRACE_GET(row), int(has_root)))
            if row.session_id:
                delta = sessions.setdefault((row.workspace_id, row.session_id), SessionDelta())
                session_delta(delta, old, row)
        self._insert_rows(conn, "trace_summaries", _TRACE_STORED, trace_rows, self._trace_tail)
        if sessions:
            self._insert_rows(
                conn,
                "trace_sessions",
                SESSION_COLUMNS,
                [
                    (ws, sid, d.trace_count, d.start_ns, d.end_ns, d.user_id)
                    + (d.input_tokens, d.output_tokens, d.cost_usd, d.error_count)
                    for (ws, sid), d in sessions.items()
                ],
                self._session_tail,
            )
        self._roll_up(conn, [s for s in new if s.llm])

    def _stored_traces(
        self, conn: Conn, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[TraceSummary, bool]]:
        by_ws: dict[str, list[str]] = {}
        for ws, trace_id in keys:
            by_ws.setdefault(ws, []).append(trace_id)
        found: dict[tuple[str, str], tuple[TraceSummary, bool]] = {}
        for ws, ids in by_ws.items():
            clause, params = self._in("t.trace_id", ids)
            sql = (
                f"SELECT {self._trace_cols}, t.has_root FROM trace_summaries t "
                f"WHERE t.workspace_id = {self.mark} AND {clause}"
            )
            for row in conn.execute(sql, [ws, *params]).fetchall():
                found[(ws, row[1])] = (TraceSummary(*row[:-1]), bool(row[-1]))
        return found

    def _roll_up(self, conn: Conn, spans: list[Span]) -> None:
        if not spans:
            return
        minutes: dict[tuple[str, int, int, str, str, str], Rollup] = {}
        for span in spans:
            key = (
                span.workspace_id,
                BY_MINUTE,
                span.start_ns // MINUTE_NS,
                span.route,
                span.model,
                span.key_id,
            )
            r = minutes.get(key)
            if r is None:
                r = minutes[key] = Rollup()
            sums = r.sums
            sums[0] += 1
            sums[1] += span.status == "error"
            sums[2] += span.input_tokens
            sums[3] += span.output_tokens
            sums[4] += span.cost_usd
            sums[5] += len(span.input)
            sums[6] += len(span.output)
            histogram.add(r.latency, span.duration_ms)
            if span.ttft_ms is not None:
                histogram.add(r.ttft, span.ttft_ms)
        rollups = dict(minutes)
        for (ws, _, minute, route, model, key_id), r in minutes.items():
            hour = minute - minute % 60
            for key in (
                (ws, BY_HOUR, hour, route, model, key_id),
                (ws, BY_HOUR_NO_KEY, hour, route, model, ""),
            ):
                into = rollups.get(key)
                if into is None:
                    into = rollups[key] = Rollup()
                add_to(into, r.sums, r.latency.items(), r.ttft.items())
        stored = self._stored_rollups(conn, list(rollups))
        rows: list[tuple[object, ...]] = []
        for key, r in rollups.items():
            old = stored.get(key)
            if old is not None:
                add_to(r, old, orjson.loads(old[_LATENCY_AT]), orjson.loads(old[_TTFT_HIST_AT]))
            rows.append(
                (
                    *key,
                    *(int(v) for v in r.sums[:4]),
                    float(r.sums[4]),
                    *(int(v) for v in r.sums[5:]),
                    orjson.dumps(histogram.encode(r.latency)).decode(),
                    orjson.dumps(histogram.encode(r.ttft)).decode(),
                    *histogram.percentiles(r.latency, _QUANTILES),
                    *histogram.percentiles(r.ttft, _QUANTILES),
                )
            )
        self._insert_rows(conn, "trace_rollups", ROLLUP_COLUMNS, rows, self._rollup_tail)

    def _stored_rollups(
        self, conn: Conn, keys: list[tuple[str, int, int, str, str, str]]
    ) -> dict[tuple[object, ...], tuple[Any, ...]]:
        """The stored roll-ups of these keys' minutes (a superset: one query a workspace
        and level), by key; values as ROLLUP_COLUMNS after the key."""
        minutes: dict[tuple[str, int], set[int]] = {}
        for key in keys:
            minutes.setdefault((key[0], key[1]), set()).add(key[2])
        found: dict[tuple[object, ...], tuple[Any, ...]] = {}
        width = len(ROLLUP_KEY)
        m = self.mark
        for (ws, level), wanted in minutes.items():
            clause, params = self._in("minute", sorted(wanted))
            sql = (
                f"SELECT {', '.join(ROLLUP_COLUMNS)} FROM trace_rollups "
                f"WHERE workspace_id = {m} AND level = {m} AND {clause}"
            )
            for row in conn.execute(sql, [ws, level, *params]).fetchall():
                found[tuple(row[:width])] = tuple(row[width:])
        return found

    def _keep_percentiles(self, conn: Conn) -> None:
        """Upgrade to schema 2: the hourly rows (what dashboards read) get their kept
        percentiles from their histograms; minute rows keep NULL (read through the
        histograms) until written again."""
        key = ", ".join(ROLLUP_KEY)
        rows = conn.execute(
            f"SELECT {key}, latency_hist, ttft_hist FROM trace_rollups WHERE level != {BY_MINUTE}"
        ).fetchall()
        m = self.mark
        sql = (
            f"UPDATE trace_rollups SET {', '.join(f'{c} = {m}' for c in ROLLUP_PERCENTILES)} "
            f"WHERE {' AND '.join(f'{c} = {m}' for c in ROLLUP_KEY)}"
        )
        width = len(ROLLUP_KEY)
        updates = [
            (
                *histogram.percentiles(dict(orjson.loads(row[width])), _QUANTILES),
                *histogram.percentiles(dict(orjson.loads(row[width + 1])), _QUANTILES),
                *row[:width],
            )
            for row in rows
        ]
        for part in chunks(updates, 5000):
            self._executemany(conn, sql, list(part))

    # --- reading -----------------------------------------------------------------------

    def traces(self, workspace_id: str, query: TraceQuery) -> Page[TraceSummary]:
        limit = page_limit(query.limit, MAX_TRACES_PAGE)
        if query.status is not None and query.status not in ("ok", "error"):
            raise InvalidInput("status is 'ok' or 'error'", param="status")
        cursor = None if query.cursor is None else decode_cursor(query.cursor, "t", int, str)
        ws = text(workspace_id)
        matched: list[str] | None = None  # the traces full text found, when few
        tokens: list[str] = []
        if query.text is not None and query.text.strip():
            # words as letters and digits: finer than either engine's tokenizer, so
            # each is one token there (FTS5 with detail=none takes no phrases)
            tokens = list(dict.fromkeys(_WORD.findall(text(query.text).lower())))[:32]
            if not tokens:
                return Page([])
            with self._reading() as conn:
                # None: many match, and the walk checks the text instead
                matched = self._text_traces(conn, ws, tokens, TEXT_LIST + 1)
            if matched == []:
                return Page([])
        m = self.mark
        # with few matched traces, those drive (looked up by id, then sorted): no index
        # walk, so SQLite is told to use none (a unary + hides a column from it)
        u = self.no_index if matched is not None else ""
        where = [f"t.workspace_id = {m}"]
        params: list[object] = [ws]

        def add(sql: str, *values: object) -> None:
            where.append(sql)
            params.extend(values)

        if query.since_ns is not None:
            add(f"{u}t.start_ns >= {m}", integer(query.since_ns))
        if query.until_ns is not None:
            add(f"{u}t.start_ns < {m}", integer(query.until_ns))
        for column in INHERITED:
            value = getattr(query, column)
            if value is not None:
                add(f"{u}t.{column} = {m}", text(value))
        if query.status is not None:
            add(f"{u}t.error_count {'>' if query.status == 'error' else '='} 0")
        if query.min_duration_ms is not None:
            add(f"t.end_ns - t.start_ns >= {m}", integer(real(query.min_duration_ms) * 1e6))
        if query.max_duration_ms is not None:
            add(f"t.end_ns - t.start_ns <= {m}", integer(real(query.max_duration_ms) * 1e6))
        if query.min_cost_usd is not None:
            add(f"t.cost_usd >= {m}", real(query.min_cost_usd))
        if query.max_cost_usd is not None:
            add(f"t.cost_usd <= {m}", real(query.max_cost_usd))
        if query.min_tokens is not None:
            add(f"t.input_tokens + t.output_tokens >= {m}", integer(query.min_tokens))
        if query.max_tokens is not None:
            add(f"t.input_tokens + t.output_tokens <= {m}", integer(query.max_tokens))
        if query.attribute is not None:
            key, value = query.attribute
            clause, values = self._attribute_clause(text(key), text(value))
            add(clause, *values)
        if matched is not None:
            clause, values = self._in("t.trace_id", matched)
            add(clause, *values)
        elif tokens:
            clause, values = self._text_clause(ws, tokens)
            add(clause, *values)
        if cursor is not None:
            start, trace_id = cursor
            add(
                f"{u}t.start_ns <= {m} AND ({u}t.start_ns < {m} OR {u}t.trace_id < {m})",
                start,
                start,
                trace_id,
            )
        sql = (
            f"SELECT {self._trace_cols} FROM trace_summaries t WHERE {' AND '.join(where)} "
            f"ORDER BY {u}t.start_ns DESC, {u}t.trace_id DESC LIMIT {limit + 1}"
        )
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        items = [TraceSummary(*row) for row in rows[:limit]]
        more = len(rows) > limit
        last = items[-1] if more else None
        return Page(items, encode_cursor("t", last.start_ns, last.trace_id) if last else None)

    def trace(self, workspace_id: str, trace_id: str) -> TraceSummary | None:
        with self._reading() as conn:
            found = self._stored_traces(conn, [(workspace_id, trace_id)])
        hit = found.get((workspace_id, trace_id))
        return hit[0] if hit else None

    def trace_spans(
        self, workspace_id: str, trace_id: str, *, cursor: str | None = None, limit: int = 1000
    ) -> Page[Span]:
        n = page_limit(limit, MAX_SPANS_PAGE)
        m = self.mark
        where = f"s.workspace_id = {m} AND s.trace_id = {m}"
        params: list[object] = [text(workspace_id), text(trace_id)]
        if cursor is not None:
            start, span_id = decode_cursor(cursor, "s", int, str)
            where += f" AND s.start_ns >= {m} AND (s.start_ns > {m} OR s.span_id > {m})"
            params += [start, start, span_id]
        sql = (
            f"SELECT {self._span_cols} FROM trace_spans s WHERE {where} "
            f"ORDER BY s.start_ns, s.span_id LIMIT {n + 1}"
        )
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        items = [span_from_row(row) for row in rows[:n]]
        last = items[-1] if len(rows) > n else None
        return Page(items, encode_cursor("s", last.start_ns, last.span_id) if last else None)

    def span(self, workspace_id: str, trace_id: str, span_id: str) -> Span | None:
        m = self.mark
        sql = (
            f"SELECT {self._span_cols} FROM trace_spans s "
            f"WHERE s.workspace_id = {m} AND s.trace_id = {m} AND s.span_id = {m}"
        )
        with self._reading() as conn:
            row = conn.execute(sql, (text(workspace_id), text(trace_id), text(span_id))).fetchone()
        return None if row is None else span_from_row(row)

    def sessions(
        self,
        workspace_id: str,
        *,
        user_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[SessionSummary]:
        n = page_limit(limit, MAX_SESSIONS_PAGE)
        m = self.mark
        where = f"workspace_id = {m}"
        params: list[object] = [text(workspace_id)]
        if user_id is not None:
            where += f" AND user_id = {m}"
            params.append(text(user_id))
        if cursor is not None:
            end, session_id = decode_cursor(cursor, "u", int, str)
            where += f" AND end_ns <= {m} AND (end_ns < {m} OR session_id < {m})"
            params += [end, end, session_id]
        sql = (
            f"SELECT {', '.join(SESSION_COLUMNS)} FROM trace_sessions WHERE {where} "
            f"ORDER BY end_ns DESC, session_id DESC LIMIT {n + 1}"
        )
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        items = [SessionSummary(*row) for row in rows[:n]]
        last = items[-1] if len(rows) > n else None
        return Page(items, encode_cursor("u", last.end_ns, last.session_id) if last else None)

    def metrics(self, workspace_id: str | None, query: MetricsQuery) -> list[MetricPoint]:
        step = query.bucket_seconds
        if type(step) is not int or step < 60 or step % 60:
            raise InvalidInput(
                "bucket_seconds is a positive multiple of 60", param="bucket_seconds"
            )
        for name in query.group_by:
            if name not in GROUPS:
                raise InvalidInput(f"group_by takes {', '.join(GROUPS)}", param="group_by")
        m = self.mark
        # every bucket that [since, until) touches, whole (so a bucket of hours is read
        # from hourly rows alone)
        minutes_per_bucket = step // 60
        lo = integer(query.since_ns) // MINUTE_NS // minutes_per_bucket * minutes_per_bucket
        hi = -(-integer(query.until_ns) // MINUTE_NS)
        hi = -(-hi // minutes_per_bucket) * minutes_per_bucket
        ranges = [(BY_MINUTE, lo, hi)]
        if step % 3600 == 0:  # whole hours from the hourly rows, the edges from minutes
            level = BY_HOUR if "key_id" in query.group_by or query.key_id else BY_HOUR_NO_KEY
            first, last = -(-lo // 60) * 60, hi // 60 * 60
            if first < last:
                ranges = [(BY_MINUTE, lo, first), (level, first, last), (BY_MINUTE, last, hi)]
        where = [f"level = {m}", f"minute >= {m}", f"minute < {m}"]
        fixed: list[object] = []
        if workspace_id is not None:
            where.append(f"workspace_id = {m}")
            fixed.append(text(workspace_id))
        for column in GROUPS:
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = {m}")
                fixed.append(text(value))
        # a point is one row when the buckets are the rows' own and the groups name every
        # part of their key: then a row's histograms are read only when it keeps no
        # percentiles (written before schema 2)
        groups = set(query.group_by)
        single = workspace_id is not None and (
            (step == 3600 and {"route", "model"} <= groups)
            or (step == 60 and {"route", "model", "key_id"} <= groups)
        )
        p50 = ROLLUP_PERCENTILES[0]
        columns = [
            f"CASE WHEN {p50} IS NULL THEN {c} END" if single and c.endswith("_hist") else c
            for c in ROLLUP_COLUMNS[2:]
        ]
        sql = f"SELECT {', '.join(columns)} FROM trace_rollups WHERE {' AND '.join(where)}"
        rows: list[Any] = []
        with self._reading() as conn:
            for level, begin, end in ranges:
                if begin < end:
                    rows += conn.execute(sql, [level, begin, end, *fixed]).fetchall()
        place = {c: i for i, c in enumerate(ROLLUP_COLUMNS[2:])}
        group_at = [place[c] for c in query.group_by]
        lat_at, ttft_at = place["latency_hist"], place["ttft_hist"]
        kept_at = place[ROLLUP_PERCENTILES[0]]
        sums_at = slice(4, 4 + len(ROLLUP_SUMS))
        group_of = itemgetter(*group_at) if group_at else (lambda row: ())
        by_point: dict[tuple[int, Any], list[Any]] = {}
        for row in rows:
            bucket = row[0] // minutes_per_bucket * minutes_per_bucket
            values = group_of(row)
            key = (bucket, values if type(values) is tuple else (values,))
            point = by_point.get(key)
            if point is None:
                by_point[key] = [row]
            else:
                point.append(row)
        found: list[MetricPoint] = []
        for (bucket, values), point in sorted(by_point.items()):
            first = point[0]
            if len(point) == 1 and first[kept_at] is not None:  # its own percentiles
                sums = first[sums_at]
                kept = first[kept_at : kept_at + len(ROLLUP_PERCENTILES)]
                latency, ttft = kept[:3], kept[3:]
            else:
                merged = Rollup(list(first[sums_at]), {}, {})
                for i, row in enumerate(point):
                    if i:
                        for j in range(len(ROLLUP_SUMS)):
                            merged.sums[j] += row[4 + j]
                    histogram.merge(merged.latency, orjson.loads(row[lat_at]))
                    histogram.merge(merged.ttft, orjson.loads(row[ttft_at]))
                sums = merged.sums
                latency = histogram.percentiles(merged.latency, _QUANTILES)
                ttft = histogram.percentiles(merged.ttft, _QUANTILES)
            found.append(
                MetricPoint(
                    bucket_ns=bucket * MINUTE_NS,
                    group=dict(zip(query.group_by, values, strict=True)),
                    requests=int(sums[0]),
                    errors=int(sums[1]),
                    latency_p50_ms=latency[0],
                    latency_p90_ms=latency[1],
                    latency_p99_ms=latency[2],
                    ttft_p50_ms=ttft[0],
                    ttft_p90_ms=ttft[1],
                    ttft_p99_ms=ttft[2],
                    input_tokens=int(sums[2]),
                    output_tokens=int(sums[3]),
                    cost_usd=float(sums[4]),
                    input_chars=int(sums[5]),
                    output_chars=int(sums[6]),
                )
            )
        return found

    # --- retention ---------------------------------------------------------------------

    def purge(self, workspace_id: str, before_ns: int) -> int:
        """Chunk by chunk (PURGE_TRACES traces, PURGE_SPANS spans a transaction): a
        crash part way leaves a consistent store and the next purge goes on."""
        m = self.mark
        ws = text(workspace_id)
        pick = (
            "SELECT trace_id, session_id, input_tokens, output_tokens, cost_usd, error_count "
            f"FROM trace_summaries WHERE workspace_id = {m} AND start_ns < {m} "
            f"ORDER BY start_ns LIMIT {PURGE_TRACES}"
        )
        drop = f"DELETE FROM trace_summaries WHERE workspace_id = {m} AND trace_id = {m}"
        less = (
            "UPDATE trace_sessions SET trace_count = trace_count - 1, "
            f"input_tokens = input_tokens - {m}, output_tokens = output_tokens - {m}, "
            f"cost_usd = cost_usd - {m}, error_count = error_count - {m} "
            f"WHERE workspace_id = {m} AND session_id = {m}"
        )
        gone = (
            "DELETE FROM trace_sessions "
            f"WHERE workspace_id = {m} AND session_id = {m} AND trace_count <= 0"
        )
        deleted = 0
        while True:
            with self._writing() as conn:
                rows = conn.execute(pick, (ws, integer(before_ns))).fetchall()
                if not rows:
                    return deleted
                count = self._delete_spans(conn, ws, [row[0] for row in rows])
                deleted += count
                if count < PURGE_SPANS:  # every span of these traces is gone: the traces go
                    self._executemany(conn, drop, [(ws, row[0]) for row in rows])
                    ended = [r for r in rows if r[1]]
                    self._executemany(conn, less, [(*r[2:], ws, r[1]) for r in ended])
                    self._executemany(conn, gone, list({(ws, r[1]) for r in ended}))


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
