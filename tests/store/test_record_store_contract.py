"""The `RecordStore` contract, one suite on every engine (SQLite and PostgreSQL): batches
land whole, search filters and orders, usage adds up; and the writer in front of it
batches and counts drops."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.engine import make_url

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
from shipyard.settings import Settings, load_settings
from shipyard.store import Database, utcnow
from tests.conftest import _pg_database


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


# Idempotent, storable, split, durable ------------------------------------------------


def test_writing_a_record_twice_stores_it_once(store: SqlRecordStore) -> None:
    store.write_batch([_rec(1), _rec(2)])
    store.write_batch([_rec(2), _rec(3), _rec(1)])  # replayed after a crash, say
    assert sorted(r.id for r in store.search(workspace_id="ws")) == ["req_1", "req_2", "req_3"]


def test_strings_and_numbers_the_engine_would_refuse_are_made_storable(
    store: SqlRecordStore,
) -> None:
    store.write_batch(
        [
            _rec(1, end_user="eve\x00admin", model="m\x00"),
            _rec(2, end_user="bad \udc80 surrogate", route="r" * 1000),
            _rec(3, prompt_tokens=2**40, completion_tokens=-(2**40), latency_ms=float("nan")),
            _rec(4, fallbacks=["f" * 300, "g" * 300], cost_usd=float("inf")),
        ]
    )
    got = {r.id: r for r in store.search(workspace_id="ws")}
    assert got["req_1"].end_user == "eve\ufffdadmin" and got["req_1"].model == "m\ufffd"
    assert got["req_2"].end_user == "bad ? surrogate" and got["req_2"].route == "r" * 128
    assert (got["req_3"].prompt_tokens, got["req_3"].completion_tokens) == (2**31 - 1, -(2**31))
    assert got["req_3"].latency_ms == 0.0 and got["req_4"].cost_usd == 0.0
    assert len(",".join(got["req_4"].fallbacks)) == 500


def _writer(store: RecordStore, **options: Any) -> tuple[RecordWriter, CollectorRegistry]:
    reg = CollectorRegistry()
    dropped, written = Counter("d", "d", registry=reg), Counter("w", "w", registry=reg)
    return RecordWriter(store, dropped, written, **options), reg


def test_a_failing_batch_is_split_and_only_the_record_failing_alone_is_dropped(
    store: SqlRecordStore,
) -> None:
    """A NUL in `user` once made PostgreSQL refuse the whole batch (2,000 records lost)."""
    writer, reg = _writer(store, batch=2000, linger=0.05)
    records = [_rec(i) for i in range(600)]
    records[17].end_user = "nul\x00user"  # storable now
    records[400].status = None  # type: ignore[assignment]  # NOT NULL: refused on both engines
    for r in records:
        writer.emit(r)
    writer.start()
    writer.flush()
    writer.stop()
    stored = {r.id for r in store.search(workspace_id="ws", limit=1000)}
    assert stored == {r.id for r in records} - {"req_400"}
    assert reg.get_sample_value("d_total") == 1 and reg.get_sample_value("w_total") == 599


def test_records_logged_by_a_killed_process_are_stored_at_the_next_start(
    store: SqlRecordStore, settings: Settings, tmp_path: Path
) -> None:
    wal = tmp_path / "wal"
    code = f"""
import os, signal, sys
from pathlib import Path
from datetime import timedelta
from prometheus_client import CollectorRegistry, Counter
from shipyard.gateway.records.record import Record
from shipyard.gateway.records.store import record_store
from shipyard.gateway.records.writer import RecordWriter
from shipyard.store import Database, utcnow
reg = CollectorRegistry()
writer = RecordWriter(
    record_store(Database({settings.sqlalchemy_url!r})),
    Counter("d", "d", registry=reg), Counter("w", "w", registry=reg),
    linger=3600, wal_dir=Path({str(wal)!r}),  # the thread waits: nothing reaches the store
)
writer.start()
for i in range(300):
    writer.emit(Record(id=f"req_{{i}}", at=utcnow(), workspace_id="ws", key_id="k", api="chat"))
print("emitted", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert out.returncode == -signal.SIGKILL and out.stdout == b"emitted\n", out.stderr
    assert store.search(workspace_id="ws") == []
    writer, reg = _writer(store, wal_dir=wal)
    writer.start()  # claims a slot and replays the dead process's slot before serving
    assert len(store.search(workspace_id="ws", limit=1000)) == 300
    writer.stop()
    # a record stored and still logged (a crash between the two) is stored once
    for slot in wal.iterdir():
        (slot / "checkpoint").unlink(missing_ok=True)
    writer, reg = _writer(store, wal_dir=wal)
    writer.start()
    writer.emit(_rec(1000))
    writer.flush()
    writer.stop()
    assert len(store.search(workspace_id="ws", limit=1000)) == 301
    assert reg.get_sample_value("d_total") == 0


@pytest.mark.postgres
def test_while_the_store_is_unavailable_nothing_is_dropped(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("pg_server")
    settings = load_settings(home=tmp_path / "home", database_url=_pg_database(server))
    db = Database(settings.sqlalchemy_url)
    db.upgrade(migration_folders())
    name = make_url(settings.sqlalchemy_url).database
    writer, reg = _writer(record_store(db), wal_dir=tmp_path / "wal", linger=0.01)
    writer.start()
    writer.emit(_rec(0))
    writer.flush()
    server.psql(  # type: ignore[attr-defined]  # pgserver's handle
        f"ALTER DATABASE {name} ALLOW_CONNECTIONS false; "
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    )
    try:
        for i in range(1, 101):
            writer.emit(_rec(i))
        deadline = time.monotonic() + 60
        while writer.outages < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.outages >= 2  # tried, failed, backed off: still holding the batch
    finally:
        server.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true;")  # type: ignore[attr-defined]  # pgserver's handle
    writer.flush(timeout=60)
    writer.stop()
    assert len(record_store(db).search(workspace_id="ws", limit=1000)) == 101
    assert reg.get_sample_value("d_total") == 0
    db.close()
