"""Denied requests, audited without a database write per request.

An unauthenticated flood must not become a flood of inserts. `DenialLog.note` counts a
denial in the metrics (`shipyard_denied_requests_total{face, reason}`) and adds it to an
in-memory bucket per (minute, face, source, reason, actor); a background task writes each
bucket once its minute is over, as one audit row whose detail starts with
`count=<n>;` (and everything left on stop). Buckets are bounded: past `max_buckets` in
a minute, new sources share one `*` bucket per face and reason.

Audit rows stay append-only: a bucket is written once, never updated."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from shipyard.audit.service import refusal
from shipyard.identity.actor import Actor
from shipyard.store import Database

log = logging.getLogger("shipyard.audit")
OVERFLOW = "*"


@dataclass(slots=True)
class _Bucket:
    count: int
    status: int
    actor: Actor | None
    target: str
    detail: str


_Key = tuple[int, str, str, str, str]  # minute, face, source, reason, actor ref


class DenialLog:
    def __init__(
        self,
        db: Database,
        counter: Counter,
        *,
        flush_seconds: float = 5.0,
        max_buckets: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._counter = counter
        self._flush_seconds = flush_seconds
        self._max = max_buckets
        self._clock = clock
        self._buckets: dict[_Key, _Bucket] = {}
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # rows that could not be written

    def note(
        self,
        *,
        face: str,
        reason: str,
        status: int,
        source: str,
        actor: Actor | None = None,
        target: str = "",
        detail: str = "",
    ) -> None:
        """Count one denial (a 401 or 403; other refused requests of anonymous callers
        are aggregated the same way, uncounted); never touches the database."""
        if status in (401, 403):
            self._counter.labels(face, reason).inc()
        minute = int(self._clock() // 60)
        ref = actor.ref if actor else "anonymous"
        key: _Key = (minute, face, source[:64], reason, ref)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None and len(self._buckets) >= self._max:
                key = (minute, face, OVERFLOW, reason, OVERFLOW)
                bucket = self._buckets.get(key)
                actor = None
            if bucket is None:
                self._buckets[key] = _Bucket(1, status, actor, target[:200], detail[:400])
            else:
                bucket.count += 1

    def counted(self, face: str, reason: str) -> None:
        """Count a denial that is audited on its own (an authenticated caller's)."""
        self._counter.labels(face, reason).inc()

    def flush(self, *, everything: bool = False) -> int:
        """Write the buckets of finished minutes (all of them with `everything`) as one
        transaction; returns the rows written. Never raises."""
        now_minute = int(self._clock() // 60)
        with self._lock:
            done = [k for k in self._buckets if everything or k[0] < now_minute]
            taken = [(k, self._buckets.pop(k)) for k in done]
        if not taken:
            return 0
        rows = []
        for (minute, face, source, reason, _ref), b in taken:
            entry = refusal(
                actor=b.actor,
                action=f"{face}.denied",
                status=b.status,
                target=b.target,
                client_addr=source,
                detail=f"count={b.count}; {reason}: {b.detail}",
            )
            if b.actor is None and _ref == OVERFLOW:
                entry.actor = "many sources"
            row = entry.row()
            row.at = datetime.fromtimestamp(minute * 60, UTC)
            rows.append(row)
        try:
            with self._db.transaction() as s:
                s.add_all(rows)
        except Exception:  # noqa: BLE001 - the audit must not take the server down
            self.dropped += len(rows)
            log.exception("could not write %d aggregated denial entries", len(rows))
            return 0
        return len(rows)

    def pending(self) -> int:
        with self._lock:
            return sum(b.count for b in self._buckets.values())

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shipyard-denials")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.flush, everything=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await asyncio.to_thread(self.flush)
