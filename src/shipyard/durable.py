"""`DurableWriter`: what Shipyard acknowledges in bulk is made durable on the request path
and moved to its store later, in batches, by one low-priority thread. Request records
(the spend ledger) and trace spans both go this way.

    submit(item)      on the event loop, before the acknowledgement: one encode and one
                      os.write to the write-ahead log (`shipyard.wal`), then a bounded
                      in-memory queue (never blocking the request); False when refused
    writer thread     a batch from the queue -> `write` -> commit the log up to the
                      batch's last item
    start()           replays what the log (and the logs of processes no longer running)
                      holds into the store, before serving

A subclass says how an item is encoded for the log, read back and stored. Stores write
idempotently, so an item both stored and still in the log after a crash is stored once.
A failing batch is split in halves down to single items; only an item that fails alone
is dropped (counted by its weight). When the store itself is unavailable (a connection
or lock error on every piece) nothing is dropped or committed: the batch is retried with
backoff, and the log keeps it across a restart.
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
from typing import Generic, TypeVar

from prometheus_client import Counter

from shipyard.wal import Position, WriteAheadLog

log = logging.getLogger("shipyard.durable")

T = TypeVar("T")


@dataclass
class _Marker:
    done: threading.Event


class StoreUnavailable(Exception):
    """The store refused for a reason of its own (connection, lock), not the items'."""


def unavailable(exc: BaseException) -> bool:
    """A DBAPI OperationalError or InterfaceError (both drivers name them so; SQLAlchemy
    wraps them under the same names): the store, not the data, is at fault."""
    names = {c.__name__ for c in type(exc).__mro__}
    return "OperationalError" in names or "InterfaceError" in names


class DurableWriter(Generic[T]):
    what = "items"  # for log lines

    def __init__(
        self,
        dropped: Counter,
        written: Counter,
        *,
        capacity: int = 50_000,
        batch: int = 2000,
        linger: float = 0.01,
        wal_dir: Path | None = None,
        fsync_interval: float | None = None,
        wal_bytes: int = 256 << 20,
        name: str = "shipyard-writer",
    ) -> None:
        """`capacity` and `batch` count weight (`weight(item)`: 1 per item unless a
        subclass says otherwise). `wal_dir`: where the write-ahead logs live (one slot
        per process under it); None keeps items in memory only until written (tests)."""
        # SimpleQueue: a C queue, several times cheaper per put than queue.Queue; bounded
        # by counting the weight queued
        self._queue: queue.SimpleQueue[tuple[T, Position | None] | _Marker | None] = (
            queue.SimpleQueue()
        )
        self._capacity = capacity
        self._queued = 0  # weight in the queue (updated under _order)
        self._batch = batch
        self._dropped = dropped
        self._written = written
        self._thread: threading.Thread | None = None
        self._name = name
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

    # What a subclass says --------------------------------------------------------------

    def encode(self, item: T) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes) -> T:
        """Raises ValueError on bytes that are not an item."""
        raise NotImplementedError

    def write(self, items: Sequence[T]) -> None:
        """Store `items` in one transaction (idempotently). Called from one thread."""
        raise NotImplementedError

    def weight(self, item: T) -> int:
        return 1

    def close_store(self) -> None:
        """Called once the writer has stopped."""

    # The request side ------------------------------------------------------------------

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
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def submit(self, item: T, payload: bytes | None = None) -> bool:
        """Make `item` durable and queue it; False (and counted as dropped) when the
        queue or the log is full. `payload`: its encoding, when the caller has it."""
        weight = self.weight(item)
        if self._queued + weight > self._capacity:
            self._dropped.inc(weight)
            return False
        wal = self.wal
        with self._order:
            position = None
            if wal is not None:
                position = wal.append(payload if payload is not None else self.encode(item))
                if position is None:  # the log is full (it counted one drop)
                    if weight > 1:
                        self._dropped.inc(weight - 1)
                    return False
            self._queued += weight
            self._queue.put_nowait((item, position))
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def backlog(self) -> int:
        """The weight queued and not yet stored."""
        return self._queued

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
                log.error("the %s writer did not finish within 30 s", self.what)
                return
            self._thread = None
        if self.wal is not None:
            self.wal.close()
            self.wal = None
        self.close_store()

    # The writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        # Background work: let the event loop thread win the core whenever both want it.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            item = self._queue.get()
            if isinstance(item, tuple) and self._queued < self._batch:
                time.sleep(self._linger)
            items = [item]
            weight = self.weight(item[0]) if isinstance(item, tuple) else 0
            while weight < self._batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(more)
                if isinstance(more, tuple):
                    weight += self.weight(more[0])
            batch = [i for i in items if isinstance(i, tuple)]
            if batch:
                self._store(batch, self.wal)
                with self._order:
                    self._queued -= weight
            for i in items:
                if isinstance(i, _Marker):
                    i.done.set()
            if any(i is None for i in items):
                return

    def _recover(self, wal: WriteAheadLog) -> None:
        """Store what `wal` holds uncommitted, batch by batch, committing as it goes."""
        batch: list[tuple[T, Position | None]] = []
        weight = count = 0
        for position, payload in wal.replay():
            try:
                item = self.decode(payload)
            except ValueError:
                log.error("write-ahead log %s: an entry is not readable; skipped", wal.directory)
                self._dropped.inc()
                wal.commit(position)
                continue
            batch.append((item, position))
            weight += self.weight(item)
            if weight >= self._batch:
                count += weight
                self._store(batch, wal)
                batch, weight = [], 0
        if batch:
            count += weight
            self._store(batch, wal)
        if count:
            log.warning("replayed %d %s from %s", count, self.what, wal.directory)

    def _store(self, batch: list[tuple[T, Position | None]], wal: WriteAheadLog | None) -> None:
        """Write a batch, then commit the log past it; while the store is unavailable,
        retry with backoff (until stopping: then the log keeps it for the next start)."""
        items = [i for i, _ in batch]
        delay = 0.25
        while True:
            try:
                self._write(items)
                break
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    log.error("the %s store is unavailable at stop; they stay logged", self.what)
                    self._gap = True
                    return
                log.warning(
                    "the %s store is unavailable (%s); retrying %d in %.2g s",
                    self.what,
                    exc.__cause__,
                    len(items),
                    delay,
                )
                self.outages += 1
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
        positions = [p for _, p in batch if p is not None]
        if wal is not None and positions and not self._gap:
            wal.commit(max(positions))

    def _write(self, items: Sequence[T]) -> None:
        """Store `items`, splitting a batch that fails: only an item that fails alone is
        dropped (and counted)."""
        try:
            self.write(items)
        except Exception as exc:  # noqa: BLE001 - keep the writer alive; count what is lost
            if unavailable(exc):
                raise StoreUnavailable from exc
            if len(items) == 1:
                log.error("the store refused one of the %s; dropped", self.what, exc_info=exc)
                self._dropped.inc(self.weight(items[0]))
                return
            mid = len(items) // 2
            self._write(items[:mid])
            self._write(items[mid:])
            return
        self._written.inc(sum(self.weight(i) for i in items))
