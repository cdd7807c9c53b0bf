"""Request records: one per gateway call, handed to a bounded queue on the request path
(never blocking it) and written in batches by a background thread. Drops are counted."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime

from prometheus_client import Counter

from shipyard.gateway.models import RequestRecord
from shipyard.store import Database

log = logging.getLogger("shipyard.gateway.records")
_TABLE = RequestRecord.__table__


@dataclass(slots=True)
class Record:
    id: str
    at: datetime
    workspace_id: str
    key_id: str
    api: str
    status: int = 200
    end_user: str = ""
    route: str = ""
    deployment_id: str = ""
    provider: str = ""
    model: str = ""
    error_class: str = ""
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hit: bool = False
    stream: bool = False
    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)

    def row(self, sqlite: bool) -> tuple[object, ...]:
        """Values in column order, ready for the DBAPI (SQLite stores datetimes as text in
        SQLAlchemy's format; psycopg adapts them itself)."""
        at: object = self.at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else self.at
        return (
            self.id,
            at,
            self.workspace_id,
            self.key_id,
            self.api,
            self.status,
            self.end_user,
            self.route,
            self.deployment_id,
            self.provider,
            self.model,
            self.error_class,
            self.latency_ms,
            self.ttft_ms,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_usd,
            self.cache_hit,
            self.stream,
            self.retries,
            ",".join(self.fallbacks)[:500],
        )


_FIELDS = tuple(f.name for f in fields(Record))


def _insert_sql(paramstyle: str) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO {_TABLE.name} ({', '.join(_FIELDS)}) "
        f"VALUES ({', '.join([mark] * len(_FIELDS))})"
    )


class RecordWriter:
    def __init__(
        self,
        db: Database,
        dropped: Counter,
        written: Counter,
        capacity: int = 50_000,
        batch: int = 2000,
        linger: float = 0.05,
    ) -> None:
        self._db = db
        self._queue: queue.Queue[tuple[object, ...] | _Marker | None] = queue.Queue(
            maxsize=capacity
        )
        self._batch = batch
        self._dropped = dropped
        self._written = written
        self._thread: threading.Thread | None = None
        self._linger = linger  # let a batch gather: fewer, larger transactions
        self._sqlite = db.is_sqlite
        self._sql = _insert_sql(db.engine.dialect.paramstyle)
        self._conn: object = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shipyard-records", daemon=True)
            self._thread.start()

    def submit(self, record: Record) -> None:
        try:
            self._queue.put_nowait(record.row(self._sqlite))  # type: ignore[arg-type]
        except queue.Full:
            self._dropped.inc()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        done = threading.Event()
        marker = _Marker(done)
        try:
            self._queue.put(marker, timeout=timeout)  # type: ignore[arg-type]
        except queue.Full:
            return
        done.wait(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        # Background work: let the event loop thread win the core whenever both want it.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            item = self._queue.get()
            if isinstance(item, tuple) and self._queue.qsize() < self._batch:
                time.sleep(self._linger)
            items = [item]
            while len(items) < self._batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [i for i in items if isinstance(i, tuple)]
            if rows:
                self._write(rows)
            for i in items:
                if isinstance(i, _Marker):
                    i.done.set()
            if any(i is None for i in items):
                if self._conn is not None:
                    self._conn.close()  # type: ignore[attr-defined]
                    self._conn = None
                return

    def _insert(self, rows: list[tuple[object, ...]]) -> None:
        """Plain DBAPI executemany on a connection of the writer's own: the driver works
        outside the GIL and no Python runs per row."""
        if self._conn is None:
            self._conn = self._db.engine.raw_connection()
        conn = self._conn
        try:
            cur = conn.cursor()
            if self._sqlite:
                cur.execute("BEGIN")  # our SQLite connections run in autocommit mode
                cur.executemany(self._sql, rows)
                cur.execute("COMMIT")
            else:
                cur.executemany(self._sql, rows)
                conn.commit()
            cur.close()
        except Exception:
            try:
                conn.rollback()
            finally:
                conn.invalidate() if hasattr(conn, "invalidate") else conn.close()
                self._conn = None
            raise

    def _write(self, rows: list[tuple[object, ...]]) -> None:
        for attempt in range(3):
            try:
                self._insert(rows)
                self._written.inc(len(rows))
                return
            except Exception:  # noqa: BLE001 - keep the writer alive; count what is lost
                log.exception(
                    "writing %d request records failed (attempt %d)", len(rows), attempt + 1
                )
        self._dropped.inc(len(rows))


@dataclass
class _Marker:
    done: threading.Event
