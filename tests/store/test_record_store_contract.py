"""The `RecordStore` contract, one suite on every engine (SQLite and PostgreSQL): batches
land whole, search filters and orders, usage adds up; and the writer in front of it
batches and counts drops."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter

from shipyard.capability import migration_folders
from shipyard.gateway.records.record import Record
from shipyard.gateway.records.store import (
    PostgresRecordStore,
    SqliteRecordStore,
    SqlRecordStore,
    record_store,
)
from shipyard.gateway.records.writer import RecordWriter
from shipyard.plugins import RecordStore
from shipyard.settings import Settings
from shipyard.store import Database, utcnow


@pytest.fixture
def store(settings: Settings) -> Iterator[SqlRecordStore]:
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.sqlalchemy_url)
    db.upgrade(migration_folders())
    found = record_store(db)
    yield found
    found.close()
    db.close()


def _rec(i: int, **values: object) -> Record:
    base: dict[str, object] = {
        "id": f"req_{i}",
        "at": utcnow() - timedelta(seconds=100 - i),
        "workspace_id": "ws",
        "key_id": "k1",
        "api": "chat",
        "route": "r",
    }
    base.update(values)
    return Record(**base)  # type: ignore[arg-type]  # test data, checked by the dataclass


def test_the_engine_gets_its_own_store(store: SqlRecordStore, backend: str) -> None:
    expected = SqliteRecordStore if backend == "sqlite" else PostgresRecordStore
    assert type(store) is expected
    check: RecordStore = store  # satisfies the contract (mypy checks this line)
    assert check is store


def test_a_batch_lands_whole_and_reads_back_equal(store: SqlRecordStore) -> None:
    records = [
        _rec(i, prompt_tokens=i, cost_usd=0.5 * i, fallbacks=["a", "b"], ttft_ms=None)
        for i in range(5)
    ]
    records[2].ttft_ms = 12.5
    store.write_batch(records)
    found = store.search(workspace_id="ws")
    assert [r.id for r in found] == [f"req_{i}" for i in reversed(range(5))]  # newest first
    back = {r.id: r for r in found}
    for original in records:
        got = back[original.id]
        assert got.at == original.at and got.at.tzinfo is not None
        assert got.fallbacks == ["a", "b"] and got.prompt_tokens == original.prompt_tokens
        assert got.cost_usd == original.cost_usd and got.ttft_ms == original.ttft_ms


def test_a_failed_batch_writes_nothing(store: SqlRecordStore) -> None:
    bad = [_rec(1), _rec(2, route="x" * 10_000)]  # too long for PostgreSQL's column
    bad[1].status = None  # type: ignore[assignment]  # NOT NULL on both engines
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        store.write_batch(bad)
    assert store.search(workspace_id="ws") == []
    store.write_batch([_rec(3)])  # the store recovers its connection
    assert [r.id for r in store.search(workspace_id="ws")] == ["req_3"]


def test_search_filters(store: SqlRecordStore) -> None:
    now = utcnow()
    store.write_batch(
        [
            _rec(1, route="a", status=200, at=now - timedelta(hours=2)),
            _rec(2, route="b", status=429, key_id="k2", at=now - timedelta(hours=1)),
            _rec(3, route="a", status=502, at=now),
            _rec(4, route="a", workspace_id="other", at=now),
        ]
    )
    ids = lambda **q: [r.id for r in store.search(workspace_id="ws", **q)]  # noqa: E731
    assert ids() == ["req_3", "req_2", "req_1"]
    assert ids(route="a") == ["req_3", "req_1"]
    assert ids(key_id="k2") == ["req_2"]
    assert ids(status=502) == ["req_3"]
    assert ids(errors_only=True) == ["req_3", "req_2"]
    assert ids(since=now - timedelta(minutes=90)) == ["req_3", "req_2"]
    assert ids(before=now - timedelta(minutes=30)) == ["req_2", "req_1"]
    assert ids(limit=1) == ["req_3"]
    assert [r.id for r in store.search(workspace_id="other")] == ["req_4"]


def test_usage_adds_up_per_route(store: SqlRecordStore) -> None:
    store.write_batch(
        [
            _rec(1, route="a", prompt_tokens=10, completion_tokens=5, cost_usd=0.25, latency_ms=10),
            _rec(2, route="a", prompt_tokens=20, completion_tokens=1, cost_usd=0.5, latency_ms=30),
            _rec(3, route="b", prompt_tokens=7, cost_usd=0.125, latency_ms=5),
            _rec(4, route="a", workspace_id="other", prompt_tokens=1000),
            _rec(5, route="a", at=utcnow() - timedelta(days=3), prompt_tokens=1000),
        ]
    )
    usage = store.usage(workspace_id="ws", since=utcnow() - timedelta(days=1))
    assert usage == [
        {
            "route": "a",
            "requests": 2,
            "prompt_tokens": 30,
            "completion_tokens": 6,
            "cost_usd": 0.75,
            "avg_latency_ms": 20.0,
        },
        {
            "route": "b",
            "requests": 1,
            "prompt_tokens": 7,
            "completion_tokens": 0,
            "cost_usd": 0.125,
            "avg_latency_ms": 5.0,
        },
    ]


def test_the_writer_batches_and_counts_drops(store: SqlRecordStore) -> None:
    reg = CollectorRegistry()
    dropped, written = Counter("d", "d", registry=reg), Counter("w", "w", registry=reg)
    writer = RecordWriter(store, dropped, written, capacity=10, linger=0.01)
    writer.start()
    for i in range(5):
        writer.emit(_rec(i))
    writer.flush()
    assert len(store.search(workspace_id="ws")) == 5
    assert reg.get_sample_value("w_total") == 5 and reg.get_sample_value("d_total") == 0
    writer.stop()
    for i in range(12):  # stopped: nothing drains the queue, so it fills and drops are counted
        writer.emit(_rec(100 + i))
    assert reg.get_sample_value("d_total") == 2
