"""The embedded trace store: one SQLite file (WAL, synchronous=NORMAL), written through
one connection by the store's one writer (a lock keeps a purge from another thread in
line), read through a small pool of read-only connections (the API reads from worker
threads; a WAL reader never waits for the writer).

Full text is an FTS5 table without content (`trace_span_text`, rowid = the span's id):
the text lives once, in `trace_spans`; deleting a span hands FTS5 the old text. It keeps
no positions (detail=none: half the write cost of positions; a query is words that must
all occur, never a phrase)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from shipyard.tracing.spans import Span
from shipyard.tracing.store import base
from shipyard.tracing.store.base import (
    ROLLUP_COLUMNS,
    ROLLUP_PERCENTILES,
    Conn,
    SqlTraceStore,
    index_ddl,
)
from shipyard.tracing.store.pool import Pool
from shipyard.tracing.store.rows import SPAN_COLUMNS

log = logging.getLogger("shipyard.tracing.store")


def _rollups(name: str) -> str:
    # WITHOUT ROWID: rows stored in key order (workspace, level, minute, ...), so a
    # dashboard's week of hourly rows is a few adjacent pages, not thousands of rows
    # strewn between the minute rows written beside them (7 d hourly by route x model
    # at 1M spans, with the kept percentiles: p95 208 -> 147 ms)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ("
        " workspace_id TEXT NOT NULL, level INTEGER NOT NULL, minute INTEGER NOT NULL,"
        " route TEXT NOT NULL,"
        " model TEXT NOT NULL, key_id TEXT NOT NULL,"
        " requests INTEGER NOT NULL, errors INTEGER NOT NULL,"
        " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,"
        " cost_usd REAL NOT NULL, input_chars INTEGER NOT NULL,"
        " output_chars INTEGER NOT NULL, latency_hist TEXT NOT NULL, ttft_hist TEXT NOT NULL,"
        f" {', '.join(f'{c} REAL' for c in ROLLUP_PERCENTILES)},"
        " PRIMARY KEY (workspace_id, level, minute, route, model, key_id)) WITHOUT ROWID"
    )


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS trace_store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trace_spans ("
    " id INTEGER PRIMARY KEY,"
    " workspace_id TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,"
    " parent_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,"
    " start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,"
    " status TEXT NOT NULL, status_message TEXT NOT NULL, service TEXT NOT NULL,"
    " operation TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,"
    " route TEXT NOT NULL, key_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " session_id TEXT NOT NULL, input_tokens INTEGER NOT NULL,"
    " output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, ttft_ms REAL,"
    " input TEXT NOT NULL, output TEXT NOT NULL,"
    " attributes TEXT NOT NULL, events TEXT NOT NULL, resource TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS trace_span_text USING fts5("
    "input, output, content='', detail=none, tokenize='unicode61')",
    "CREATE TABLE IF NOT EXISTS trace_summaries ("
    " workspace_id TEXT NOT NULL, trace_id TEXT NOT NULL, name TEXT NOT NULL,"
    " start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,"
    " span_count INTEGER NOT NULL, error_count INTEGER NOT NULL,"
    " service TEXT NOT NULL, model TEXT NOT NULL, route TEXT NOT NULL,"
    " key_id TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT NOT NULL,"
    " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,"
    " cost_usd REAL NOT NULL, input TEXT NOT NULL, output TEXT NOT NULL,"
    " has_root INTEGER NOT NULL,"
    " UNIQUE (workspace_id, trace_id))",
    "CREATE TABLE IF NOT EXISTS trace_sessions ("
    " workspace_id TEXT NOT NULL, session_id TEXT NOT NULL,"
    " trace_count INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,"
    " user_id TEXT NOT NULL, input_tokens INTEGER NOT NULL,"
    " output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,"
    " error_count INTEGER NOT NULL,"
    " PRIMARY KEY (workspace_id, session_id))",
    _rollups("trace_rollups"),
    # One index over a span's place serves the trace view's order and keeps a span
    # stored once (the writer skips the (workspace, trace, span) already stored; UNIQUE
    # is the backstop): a second index of the same size, written at random places, cost
    # ~15 us a span at 500k spans. A store made before keeps its two (the table's
    # UNIQUE and a plain index of this name), which read the same.
    *(
        ddl.replace("CREATE INDEX", "CREATE UNIQUE INDEX")
        if " ix_trace_spans_order " in ddl
        else ddl
        for ddl in index_ddl()
    ),
)


_V1_ROLLUP_COLUMNS = ", ".join(c for c in ROLLUP_COLUMNS if c not in ROLLUP_PERCENTILES)
# schema 1 -> 2: the roll-ups rebuilt in key order, with the kept percentiles (filled by
# the store's own step after these)
UPGRADES = {
    1: [
        "DROP TABLE IF EXISTS trace_rollups_v2",
        _rollups("trace_rollups_v2"),
        f"INSERT INTO trace_rollups_v2 ({_V1_ROLLUP_COLUMNS}) "
        f"SELECT {_V1_ROLLUP_COLUMNS} FROM trace_rollups",
        "DROP TABLE trace_rollups",
        "ALTER TABLE trace_rollups_v2 RENAME TO trace_rollups",
        *(ddl for ddl in index_ddl() if " ON trace_rollups " in ddl),
    ]
}

_BUSY_MS = 10_000
# The WAL is copied back into the database file by a thread of its own (`_Checkpointer`,
# PASSIVE: it never blocks the writer or a reader), so the writer does not stop for the
# copy and its fsyncs at a commit (at 300k spans: the writer ~101 -> ~73 us a span, the
# WAL stays ~40 MiB). The writer checkpoints itself only once the WAL holds this many
# pages (256 MiB): when the thread falls far behind.
_CHECKPOINT_PAGES = 65536
_CHECKPOINT_EVERY = 0.05  # seconds: at most ~20 checkpoints a second
# statistics for the planner (which filter's index to walk) every this many writes
_OPTIMIZE_EVERY = 500


def _match(tokens: list[str]) -> str:
    """Every token a quoted FTS5 string (all must occur): nothing the user typed is
    read as query syntax."""
    return " ".join('"' + token.replace('"', '""') + '"' for token in tokens)


def _create(path: Path) -> None:
    """The file exists, is ours to write (no symlink) and is private (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class _Checkpointer:
    """Runs a PASSIVE checkpoint on its own connection whenever the writer has
    committed (woken by `written`), off the writer's path."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=_BUSY_MS / 1000
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="shipyard-trace-checkpoint", daemon=True
        )
        self._thread.start()

    def written(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # background work: lower priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the writer's own checkpoint is the fallback
                log.warning("trace store checkpoint failed: %s", exc)
            self._stop.wait(_CHECKPOINT_EVERY)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._conn.close()


class SqliteTraceStore(SqlTraceStore):
    mark = "?"
    least = "MIN"
    greatest = "MAX"
    no_index = "+"

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        _create(self.path)
        self._lock = threading.Lock()
        self._writes = 0
        self._checkpointer: _Checkpointer | None = None
        self._writer = self._connect(write=True)
        with self._lock:
            self._migrate(self._writer)
        self._pool: Pool[sqlite3.Connection] = Pool(
            lambda: self._connect(write=False), healthy=lambda c: not c.in_transaction
        )
        self._insert = (
            f"INSERT OR IGNORE INTO trace_spans ({', '.join(SPAN_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(SPAN_COLUMNS))})"
        )
        self._checkpointer = _Checkpointer(self.path)

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_MS / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        if write:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32768")  # 32 MiB
            conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA analysis_limit = 1000")  # ANALYZE samples: milliseconds
        else:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ddl in SCHEMA:
                conn.execute(ddl)
            base.record_version(
                conn, "?", {1: [*UPGRADES[1], self._keep_percentiles]}, f"{self.path}: "
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _writing(self) -> Iterator[Conn]:
        with self._lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if self._checkpointer is not None:
                self._checkpointer.written()
            self._writes += 1
            if self._writes % _OPTIMIZE_EVERY == 0:
                conn.execute("ANALYZE trace_summaries")  # sampled: analysis_limit

    def _reading(self) -> AbstractContextManager[Conn]:
        return self._pool.connection()

    def _executemany(self, conn: Conn, sql: str, rows: list[tuple[object, ...]]) -> None:
        if rows:
            conn.executemany(sql, rows)

    def _insert_rows(
        self,
        conn: Conn,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[object, ...]],
        tail: str = "",
    ) -> None:
        if rows:
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))}) {tail}",
                rows,
            )

    def _in(self, column: str, values: Sequence[object]) -> tuple[str, list[object]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def _insert_spans(self, conn: Conn, rows: list[tuple[Span, tuple[object, ...]]]) -> list[Span]:
        # the spans already stored are left out first (by the spans of the batch's
        # traces, read from the order index alone); one executemany; the new rows are
        # those past the largest id before it (an INTEGER PRIMARY KEY without
        # AUTOINCREMENT counts up from the largest)
        rows = self._unstored(conn, rows)
        if not rows:
            return []
        (before,) = conn.execute("SELECT coalesce(max(id), 0) FROM trace_spans").fetchone()
        changes = conn.total_changes
        conn.executemany(self._insert, [row for _, row in rows])
        if conn.total_changes - changes == len(rows):
            new = [span for span, _ in rows]
        else:
            stored = {
                tuple(key)
                for key in conn.execute(
                    "SELECT workspace_id, trace_id, span_id FROM trace_spans WHERE id > ?",
                    (before,),
                )
            }
            new = [s for s, _ in rows if (s.workspace_id, s.trace_id, s.span_id) in stored]
        conn.execute(
            "INSERT INTO trace_span_text (rowid, input, output) SELECT id, input, output "
            "FROM trace_spans WHERE id > ? AND (input != '' OR output != '')",
            (before,),
        )
        return new

    def _unstored(
        self, conn: Conn, rows: list[tuple[Span, tuple[object, ...]]]
    ) -> list[tuple[Span, tuple[object, ...]]]:
        traces: dict[str, set[str]] = {}
        for span, _ in rows:
            traces.setdefault(span.workspace_id, set()).add(span.trace_id)
        stored: set[tuple[str, str, str]] = set()
        for ws, ids in traces.items():
            for part in base.chunks(sorted(ids), 500):
                found = conn.execute(
                    "SELECT trace_id, span_id FROM trace_spans WHERE workspace_id = ? "
                    f"AND trace_id IN ({', '.join('?' * len(part))})",
                    [ws, *part],
                ).fetchall()
                stored.update((ws, trace_id, span_id) for trace_id, span_id in found)
        if not stored:
            return rows
        return [r for r in rows if (r[0].workspace_id, r[0].trace_id, r[0].span_id) not in stored]

    def _text_clause(self, workspace_id: str, tokens: list[str]) -> tuple[str, list[object]]:
        # many traces match (a common word): the walk checks each trace's spans, one
        # FTS5 lookup by id each (CROSS JOIN keeps the spans outside), and stops at
        # the page
        return (
            "EXISTS (SELECT 1 FROM trace_spans s CROSS JOIN trace_span_text f "
            "ON f.rowid = s.id WHERE s.workspace_id = t.workspace_id "
            "AND s.trace_id = t.trace_id AND trace_span_text MATCH ?)",
            [_match(tokens)],
        )

    def _text_traces(
        self, conn: Conn, workspace_id: str, tokens: list[str], most: int
    ) -> list[str] | None:
        rows = conn.execute(
            "SELECT DISTINCT s.trace_id FROM trace_span_text f CROSS JOIN trace_spans s "
            "ON s.id = f.rowid WHERE trace_span_text MATCH ? AND s.workspace_id = ? "
            f"LIMIT {int(most)}",
            (_match(tokens), workspace_id),
        ).fetchall()
        return None if len(rows) >= most else [row[0] for row in rows]

    def _attribute_clause(self, key: str, value: str) -> tuple[str, list[object]]:
        return (
            "EXISTS (SELECT 1 FROM trace_spans s, json_each(s.attributes) a "
            "WHERE s.workspace_id = t.workspace_id AND s.trace_id = t.trace_id "
            "AND a.key = ? AND (CASE a.type WHEN 'true' THEN 'true' "
            "WHEN 'false' THEN 'false' ELSE CAST(a.value AS TEXT) END) = ?)",
            [key, value],
        )

    def _delete_spans(self, conn: Conn, workspace_id: str, trace_ids: list[str]) -> int:
        clause, params = self._in("trace_id", trace_ids)
        rows = conn.execute(
            f"SELECT id, input, output FROM trace_spans WHERE workspace_id = ? AND {clause} "
            f"LIMIT {base.PURGE_SPANS}",
            [workspace_id, *params],
        ).fetchall()
        texts = [(row[0], row[1], row[2]) for row in rows if row[1] or row[2]]
        if texts:
            conn.executemany(
                "INSERT INTO trace_span_text (trace_span_text, rowid, input, output) "
                "VALUES ('delete', ?, ?, ?)",
                texts,
            )
        conn.executemany("DELETE FROM trace_spans WHERE id = ?", [(row[0],) for row in rows])
        return len(rows)

    def close(self) -> None:
        """Close the connections (again: nothing)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self._pool.close()
        with self._lock:
            # a reader elsewhere: a later checkpoint finishes it
            with contextlib.suppress(sqlite3.OperationalError, sqlite3.ProgrammingError):
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer.close()
