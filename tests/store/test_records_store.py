"""The request-record writer on SQLite and PostgreSQL: batches land, drops are counted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select

from shipyard.gateway.models import RequestRecord
from shipyard.gateway.records import Record, RecordWriter
from shipyard.settings import Settings
from shipyard.store import Database, utcnow


def test_records_are_written_in_batches(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.sqlalchemy_url)
    db.upgrade()
    reg = CollectorRegistry()
    dropped, written = Counter("d", "d", registry=reg), Counter("w", "w", registry=reg)
    writer = RecordWriter(db, dropped, written, capacity=10, linger=0.01)
    writer.start()
    for i in range(5):
        writer.submit(
            Record(
                id=f"req_{i}",
                at=utcnow(),
                workspace_id="ws",
                key_id="k",
                api="chat",
                route="r",
                prompt_tokens=i,
                cost_usd=0.5 * i,
                fallbacks=["a", "b"],
            )
        )
    writer.flush()
    with db.transaction() as s:
        rows = s.scalars(select(RequestRecord).order_by(RequestRecord.seq)).all()
    assert [r.id for r in rows] == [f"req_{i}" for i in range(5)]
    assert rows[3].prompt_tokens == 3 and rows[3].cost_usd == 1.5 and rows[0].fallbacks == "a,b"
    assert rows[0].at.tzinfo is not None
    assert reg.get_sample_value("w_total") == 5 and reg.get_sample_value("d_total") == 0
    writer.stop()
    for i in range(12):  # stopped: nothing drains the queue, so it fills and drops are counted
        writer.submit(Record(id=f"x{i}", at=utcnow(), workspace_id="ws", key_id="k", api="chat"))
    assert reg.get_sample_value("d_total") == 2
    db.close()
