"""The trace store on PostgreSQL (replicas share it): raw psycopg 3, one writer
connection, a small pool of autocommit readers. Every write transaction first takes one
advisory lock, so writers in several processes take turns (the summaries are merged in
Python inside the transaction) and the schema is created once, under the same lock.

Full text is a GIN index over `to_tsvector('simple', input || ' ' || output)` (no
stemming, like FTS5's unicode61); a query is `plainto_tsquery`, which reads no syntax.
Attributes are JSONB; the attribute filter is `attributes ->> key = value` on the spans
of each candidate trace (no index of its own: bounded by the other filters)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads

from shipyard.errors import ConfigError
from shipyard.tracing.spans import Span
from shipyard.tracing.store import base
from shipyard.tracing.store.base import (
    ROLLUP_PERCENTILES,
    Conn,
    SqlTraceStore,
    chunks,
    index_ddl,
)
from shipyard.tracing.store.pool import Pool
from shipyard.tracing.store.rows import JSON_COLUMNS, SPAN_COLUMNS

LOCK = 0x5348_4950_5452_4143  # "SHIPTRAC": the trace store's advisory lock
# the first 50,000 characters of each: a tsvector holds at most 1 MB (past it the insert,
# and the batch, would fail)
_TEXT = "to_tsvector('simple', left(input, 50000) || ' ' || left(output, 50000))"
_S_TEXT = _TEXT.replace("input", "s.input").replace("output", "s.output")
_ROWS_PER_INSERT = 5000

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS trace_store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trace_spans ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " workspace_id TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,"
    " parent_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,"
    " start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL,"
    " status TEXT NOT NULL, status_message TEXT NOT NULL, service TEXT NOT NULL,"
    " operation TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,"
    " route TEXT NOT NULL, key_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " session_id TEXT NOT NULL, input_tokens BIGINT NOT NULL,"
    " output_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL,"
    " ttft_ms DOUBLE PRECISION, input TEXT NOT NULL, output TEXT NOT NULL,"
    " attributes JSONB NOT NULL, events JSONB NOT NULL, resource JSONB NOT NULL,"
    " UNIQUE (workspace_id, trace_id, span_id))",
    f"CREATE INDEX IF NOT EXISTS ix_trace_spans_text ON trace_spans USING gin ({_TEXT})",
    "CREATE TABLE IF NOT EXISTS trace_summaries ("
    " workspace_id TEXT NOT NULL, trace_id TEXT NOT NULL, name TEXT NOT NULL,"
    " start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL,"
    " span_count BIGINT NOT NULL, error_count BIGINT NOT NULL,"
    " service TEXT NOT NULL, model TEXT NOT NULL, route TEXT NOT NULL,"
    " key_id TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT NOT NULL,"
    " input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,"
    " cost_usd DOUBLE PRECISION NOT NULL, input TEXT NOT NULL, output TEXT NOT NULL,"
    " has_root INTEGER NOT NULL,"
    " UNIQUE (workspace_id, trace_id))",
    "CREATE TABLE IF NOT EXISTS trace_sessions ("
    " workspace_id TEXT NOT NULL, session_id TEXT NOT NULL,"
    " trace_count BIGINT NOT NULL, start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL,"
    " user_id TEXT NOT NULL, input_tokens BIGINT NOT NULL,"
    " output_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL,"
    " error_count BIGINT NOT NULL,"
    " PRIMARY KEY (workspace_id, session_id))",
    "CREATE TABLE IF NOT EXISTS trace_rollups ("
    " workspace_id TEXT NOT NULL, level INTEGER NOT NULL, minute BIGINT NOT NULL,"
    " route TEXT NOT NULL,"
    " model TEXT NOT NULL, key_id TEXT NOT NULL,"
    " requests BIGINT NOT NULL, errors BIGINT NOT NULL,"
    " input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,"
    " cost_usd DOUBLE PRECISION NOT NULL, input_chars BIGINT NOT NULL,"
    " output_chars BIGINT NOT NULL, latency_hist TEXT NOT NULL, ttft_hist TEXT NOT NULL,"
    f" {', '.join(f'{c} DOUBLE PRECISION' for c in ROLLUP_PERCENTILES)},"
    " PRIMARY KEY (workspace_id, level, minute, route, model, key_id))",
    *index_ddl(),
)


UPGRADES = {
    1: [
        f"ALTER TABLE trace_rollups ADD COLUMN IF NOT EXISTS {c} DOUBLE PRECISION"
        for c in ROLLUP_PERCENTILES
    ]
}

_TYPES = {
    **{c: "text" for c in SPAN_COLUMNS},  # JSON columns too: cast in the statement
    **dict.fromkeys(
        (
            "start_ns",
            "end_ns",
            "input_tokens",
            "output_tokens",
            "span_count",
            "error_count",
            "has_root",
            "trace_count",
            "minute",
            "level",
            "requests",
            "errors",
            "input_chars",
            "output_chars",
        ),
        "int8",
    ),
    **dict.fromkeys(("cost_usd", "ttft_ms", *ROLLUP_PERCENTILES), "float8"),
    **dict.fromkeys(("name", "latency_hist", "ttft_hist"), "text"),
}


def _unnest(columns: Sequence[str]) -> str:
    """Rows sent as one array a column: one statement, one round trip, any count."""
    arrays = ", ".join(f"%b::{_TYPES.get(c, 'text')}[]" for c in columns)  # binary
    return f"unnest({arrays}) AS u({', '.join(columns)})"


def _healthy(conn: psycopg.Connection[Any]) -> bool:
    return not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE


class PostgresTraceStore(SqlTraceStore):
    mark = "%s"
    least = "LEAST"
    greatest = "GREATEST"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._lock = threading.Lock()
        self._writer = self._connect()
        with self._writing() as conn:
            self._migrate(conn)
        self._pool: Pool[psycopg.Connection[Any]] = Pool(self._connect, healthy=_healthy)
        self._insert = (
            f"INSERT INTO trace_spans ({', '.join(SPAN_COLUMNS)}) SELECT "
            + ", ".join(f"{c}::jsonb" if c in JSON_COLUMNS else c for c in SPAN_COLUMNS)
            + f" FROM {_unnest(SPAN_COLUMNS)} "
            "ON CONFLICT (workspace_id, trace_id, span_id) DO NOTHING "
            "RETURNING workspace_id, trace_id, span_id"
        )

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"trace store: cannot connect to PostgreSQL: {exc}") from None
        set_json_loads(orjson.loads, conn)
        return conn

    def _migrate(self, conn: Conn) -> None:
        for ddl in SCHEMA:
            conn.execute(ddl)
        base.record_version(conn, "%s", {1: [*UPGRADES[1], self._keep_percentiles]}, "")

    @contextmanager
    def _writing(self) -> Iterator[Conn]:
        with self._lock:
            if self._writer.closed or self._writer.broken:
                self._writer = self._connect()
            conn = self._writer
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
                yield conn

    def _reading(self) -> AbstractContextManager[Conn]:
        return self._pool.connection()

    def _executemany(self, conn: Conn, sql: str, rows: list[tuple[object, ...]]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(sql, rows)

    def _in(self, column: str, values: Sequence[object]) -> tuple[str, list[object]]:
        return f"{column} = ANY(%s)", [list(values)]

    def _insert_rows(
        self,
        conn: Conn,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[object, ...]],
        tail: str = "",
    ) -> None:
        if rows:
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"SELECT * FROM {_unnest(columns)} {tail}",
                [list(column) for column in zip(*rows, strict=True)],
                binary=True,  # arrays in binary: no text escaping (5x less client CPU)
            )

    def _insert_spans(self, conn: Conn, rows: list[tuple[Span, tuple[object, ...]]]) -> list[Span]:
        by_key = {(s.workspace_id, s.trace_id, s.span_id): s for s, _ in rows}
        new: list[Span] = []
        for part in chunks(rows, _ROWS_PER_INSERT):
            params = [list(column) for column in zip(*(row for _, row in part), strict=True)]
            for key in conn.execute(self._insert, params, binary=True).fetchall():
                new.append(by_key[tuple(key)])
        return new

    def _text_clause(self, workspace_id: str, tokens: list[str]) -> tuple[str, list[object]]:
        # many traces match: the walk checks each trace's spans and stops at the page
        # (a scalar subquery, not EXISTS: PostgreSQL would turn EXISTS into a join
        # over every matching span)
        return (
            "(SELECT 1 FROM trace_spans s WHERE s.workspace_id = t.workspace_id "
            f"AND s.trace_id = t.trace_id AND {_S_TEXT} @@ plainto_tsquery('simple', %s) "
            "LIMIT 1) IS NOT NULL",
            [" ".join(tokens)],
        )

    def _text_traces(
        self, conn: Conn, workspace_id: str, tokens: list[str], most: int
    ) -> list[str] | None:
        # through the text index always (for a common word the planner read every span
        # and tokenized it: seconds), and with a LIMIT, no DISTINCT (which reads every
        # match before its first row)
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            rows = conn.execute(
                "SELECT s.trace_id FROM trace_spans s WHERE s.workspace_id = %s "
                f"AND {_S_TEXT} @@ plainto_tsquery('simple', %s) LIMIT {int(most) * 8}",
                (workspace_id, " ".join(tokens)),
            ).fetchall()
        found = list(dict.fromkeys(row[0] for row in rows))
        return None if len(found) >= most or len(rows) == most * 8 else found

    def _attribute_clause(self, key: str, value: str) -> tuple[str, list[object]]:
        return (
            "EXISTS (SELECT 1 FROM trace_spans s WHERE s.workspace_id = t.workspace_id "
            "AND s.trace_id = t.trace_id AND s.attributes ->> %s = %s)",
            [key, value],
        )

    def _delete_spans(self, conn: Conn, workspace_id: str, trace_ids: list[str]) -> int:
        cur = conn.execute(
            "DELETE FROM trace_spans WHERE id IN (SELECT id FROM trace_spans "
            f"WHERE workspace_id = %s AND trace_id = ANY(%s) LIMIT {base.PURGE_SPANS})",
            (workspace_id, trace_ids),
        )
        return int(cur.rowcount)

    def close(self) -> None:
        self._pool.close()
        with self._lock:
            self._writer.close()
