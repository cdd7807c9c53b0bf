"""The request-record writer: a `CallSink` that makes each record durable on the request
path and stores it later, in batches, from one low-priority thread.

    emit(record)      on the event loop, before the response ends: one orjson dumps and
                      one os.write to the write-ahead log (`shipyard.wal`), then a
                      bounded in-memory queue (never blocking the request)
    writer thread     a batch from the queue -> RecordStore.write_batch -> commit the log
                      up to the batch's last record
    start()           replays what the log (and the logs of processes no longer running)
                      holds into the store, before serving

Writes are idempotent (the request id is unique), so a record both stored and still in
the log after a crash is stored once. A failing batch is split in halves down to single
records; only a record that fails alone is dropped. When the store itself is unavailable
(a connection or lock error on every piece) nothing is dropped or committed: the batch
is retried with backoff, and the log keeps it across a restart. Drops are counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter

from shipyard.gateway.records.record import Record
from shipyard.plugins import RecordStore
from shipyard.wal import Position, WriteAheadLog

log = logging.getLogger("shipyard.gateway.records")

Item = tuple[Record, Position | None]


@dataclass
class _Marker:
    done: threading.Event


class StoreUnavailable(Exception):
    """The store refused for a reason of its own (connection, lock), not the records'."""


def unavailable(exc: BaseException) -> bool:
    """A DBAPI OperationalError or InterfaceError (both drivers name them so; SQLAlchemy
    wraps them under the same names): the store, not the data, is at fault."""
    names = {c.__name__ for c in type(exc).__mro__}
    return "OperationalError" in names or "InterfaceError" in names


class RecordWriter:
    def __init__(
        self,
        store: RecordStore,
        dropped: Counter,
        written: Counter,
        capacity: int = 50_000,
        batch: int = 2000,
        linger: float = 0.01,
        wal_dir: Path | None = None,
        fsync_interval: float | None = None,
        wal_bytes: int = 256 << 20,
    ) -> None:
        """`wal_dir`: where the write-ahead logs live (one slot per process under it);
        None keeps records in memory only until written (tests, embedded uses)."""
        self.store = store
        # SimpleQueue: a C queue, several times cheaper per put than queue.Queue; bounded
        # by checking its size first
        self._queue: queue.SimpleQueue[Item | _Marker | None] = queue.SimpleQueue()
        self._capacity = capacity
        self._batch = batch
        self._dropped = dropped
        self._written = written
        self._thread: threading.Thread | None = None
        # let a batch gather (fewer, larger transactions), but briefly: a long linger makes
        # larger batches whose write holds the core (p99 at one client 2.4 -> 1.5 ms)
        self._linger = linger
        self._wal_dir = wal_dir
        self._wal_options = {
            "fsync_interval": fsync_interval,
            "max_bytes": wal_bytes,
            "on_drop": dropped.inc,
        }
        self.wal: WriteAheadLog | None = None
        self._order = threading.Lock()  # log order == queue order, whoever emits
        self._stopping = threading.Event()
        self._gap = False  # a batch left to the log: commit nothing past it
        self.outages = 0  # batches retried because the store was unavailable

    def start(self) -> None:
        """Claim this process's write-ahead log, replay every log left uncommitted into
        the store (blocking: call it before serving), then start the writer thread."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._gap = False
        if self._wal_dir is not None and self.wal is None:
            self.wal = WriteAheadLog.claim(self._wal_dir, **self._wal_options)
            self._recover(self.wal)
            for orphan in WriteAheadLog.orphans(self._wal_dir, **self._wal_options):
                self._recover(orphan)
        self._thread = threading.Thread(target=self._run, name="shipyard-records", daemon=True)
        self._thread.start()

    def emit(self, record: Record) -> None:
        if self._queue.qsize() >= self._capacity:
            self._dropped.inc()
            return
        wal = self.wal
        if wal is None:
            self._queue.put_nowait((record, None))
            return
        payload = record.to_bytes()
        with self._order:
            position = wal.append(payload)  # durable from here (the log counts a refusal)
            if position is not None:
                self._queue.put_nowait((record, position))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(_Marker(done))
        done.wait(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()  # a store that is down is not waited for: the log keeps it
            self._queue.put(None)
            self._thread.join(timeout=30)
            if self._thread.is_alive():  # still writing: leave its connection to it
                log.error("the record writer did not finish within 30 s")
                return
            self._thread = None
        if self.wal is not None:
            self.wal.close()
            self.wal = None
        self.store.close()

    # The writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        # Background work: let the event loop thread win the core whenever both want it.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
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
            batch = [i for i in items if isinstance(i, tuple)]
            if batch:
                self._store(batch, self.wal)
            for i in items:
                if isinstance(i, _Marker):
                    i.done.set()
            if any(i is None for i in items):
                return

    def _recover(self, wal: WriteAheadLog) -> None:
        """Store what `wal` holds uncommitted, batch by batch, committing as it goes."""
        batch: list[Item] = []
        count = 0
        for position, payload in wal.replay():
            try:
                batch.append((Record.from_bytes(payload), position))
            except ValueError:
                log.error("write-ahead log %s: an entry is not a record; skipped", wal.directory)
                self._dropped.inc()
                wal.commit(position)
                continue
            if len(batch) >= self._batch:
                count += len(batch)
                self._store(batch, wal)
                batch = []
        if batch:
            count += len(batch)
            self._store(batch, wal)
        if count:
            log.warning("replayed %d request records from %s", count, wal.directory)

    def _store(self, batch: list[Item], wal: WriteAheadLog | None) -> None:
        """Write a batch, then commit the log past it; while the store is unavailable,
        retry with backoff (until stopping: then the log keeps it for the next start)."""
        records = [r for r, _ in batch]
        delay = 0.25
        while True:
            try:
                self._write(records)
                break
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    log.error("the record store is unavailable at stop; records stay logged")
                    self._gap = True
                    return
                log.warning(
                    "the record store is unavailable (%s); retrying %d records in %.2g s",
                    exc.__cause__,
                    len(records),
                    delay,
                )
                self.outages += 1
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
        positions = [p for _, p in batch if p is not None]
        if wal is not None and positions and not self._gap:
            wal.commit(max(positions))

    def _write(self, records: Sequence[Record]) -> None:
        """Store `records`, splitting a batch that fails: only a record that fails alone
        is dropped (and counted)."""
        try:
            self.store.write_batch(records)
        except Exception as exc:  # noqa: BLE001 - keep the writer alive; count what is lost
            if unavailable(exc):
                raise StoreUnavailable from exc
            if len(records) == 1:
                log.error("a request record was refused by the store; dropped", exc_info=exc)
                self._dropped.inc()
                return
            mid = len(records) // 2
            self._write(records[:mid])
            self._write(records[mid:])
            return
        self._written.inc(len(records))
