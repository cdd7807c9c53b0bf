"""The request-record writer: a `CallSink` that makes each record durable on the request
path (the write-ahead log) and stores it later, in batches, from one low-priority thread
(`shipyard.durable.DurableWriter`, which trace spans use too)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter

from shipyard.durable import DurableWriter, StoreUnavailable, unavailable
from shipyard.gateway.records.record import Record
from shipyard.plugins import RecordStore

if TYPE_CHECKING:
    from shipyard.gateway.core.call import Call

__all__ = ["RecordWriter", "StoreUnavailable", "unavailable"]


class RecordWriter(DurableWriter[Record]):
    what = "request records"

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
        super().__init__(
            dropped,
            written,
            capacity=capacity,
            batch=batch,
            linger=linger,
            wal_dir=wal_dir,
            fsync_interval=fsync_interval,
            wal_bytes=wal_bytes,
            name="shipyard-records",
        )
        self.store = store

    def emit(self, record: Record, call: Call | None = None) -> None:  # the CallSink
        self.submit(record)

    def encode(self, item: Record) -> bytes:
        return item.to_bytes()

    def decode(self, payload: bytes) -> Record:
        return Record.from_bytes(payload)

    def write(self, items: Sequence[Record]) -> None:
        self.store.write_batch(items)

    def close_store(self) -> None:
        self.store.close()
