"""Request records: one per gateway call, handed to a bounded queue on the request path
(never blocking it) and written in batches by a background thread. Drops are counted."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy import insert

from shipyard.gateway.models import RequestRecord
from shipyard.store import Database

log = logging.getLogger("shipyard.gateway.records")


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

    def row(self) -> dict[str, object]:
        data = asdict(self)
        data["fallbacks"] = ",".join(self.fallbacks)[:500]
        return data


class RecordWriter:
    def __init__(self, db: Database, dropped: Counter, written: Counter,
                 capacity: int = 50_000, batch: int = 1000) -> None:
        self._db = db
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._dropped = dropped
        self._written = written
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shipyard-records", daemon=True)
            self._thread.start()

    def submit(self, record: Record) -> None:
        try:
            self._queue.put_nowait(record)
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
        while True:
            item = self._queue.get()
            items = [item]
            while len(items) < self._batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [i.row() for i in items if isinstance(i, Record)]
            if rows:
                self._write(rows)
            for i in items:
                if isinstance(i, _Marker):
                    i.done.set()
            if any(i is None for i in items):
                return

    def _write(self, rows: list[dict[str, object]]) -> None:
        for attempt in range(3):
            try:
                with self._db.transaction() as s:
                    s.execute(insert(RequestRecord), rows)
                self._written.inc(len(rows))
                return
            except Exception:  # noqa: BLE001 - keep the writer alive; count what is lost
                log.exception("writing %d request records failed (attempt %d)", len(rows), attempt + 1)
        self._dropped.inc(len(rows))


@dataclass
class _Marker:
    done: threading.Event
