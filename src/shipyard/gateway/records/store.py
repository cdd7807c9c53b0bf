"""Request-record stores, one per engine, behind `shipyard.plugins.RecordStore`.

Writes are plain DBAPI `executemany` on a connection of the store's own (the driver
works outside the GIL and no ORM runs per row); reads go through SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from shipyard.gateway.records.record import Record
from shipyard.gateway.tables import RequestRecord
from shipyard.store import Database

_TABLE = RequestRecord.__table__
_FIELDS = tuple(f.name for f in fields(Record))
_COLUMNS = [c for c in _TABLE.columns if c.name in _FIELDS]


def _values(record: Record, at: object) -> tuple[object, ...]:
    return (
        record.id,
        at,
        record.workspace_id,
        record.key_id,
        record.api,
        record.status,
        record.end_user,
        record.route,
        record.deployment_id,
        record.provider,
        record.model,
        record.error_class,
        record.latency_ms,
        record.ttft_ms,
        record.prompt_tokens,
        record.completion_tokens,
        record.cost_usd,
        record.cache_hit,
        record.stream,
        record.retries,
        ",".join(record.fallbacks)[:500],
    )


class SqlRecordStore:
    """What both engines share: the query side, and the writer's connection."""

    mark = "?"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql = (
            f"INSERT INTO {RequestRecord.__tablename__} ({', '.join(_FIELDS)}) "
            f"VALUES ({', '.join([self.mark] * len(_FIELDS))})"
        )
        self._conn: Any = None

    def _row(self, record: Record) -> tuple[object, ...]:
        return _values(record, record.at)

    def _execute(self, cur: Any, rows: list[tuple[object, ...]]) -> None:
        cur.executemany(self._sql, rows)
        self._conn.commit()

    def write_batch(self, records: Sequence[Record]) -> None:
        rows = [self._row(r) for r in records]
        if self._conn is None:
            self._conn = self._db.engine.raw_connection()
        try:
            cur = self._conn.cursor()
            self._execute(cur, rows)
            cur.close()
        except Exception:
            conn, self._conn = self._conn, None
            try:
                conn.rollback()
            finally:
                conn.invalidate()
            raise

    def search(
        self,
        *,
        workspace_id: str,
        route: str | None = None,
        key_id: str | None = None,
        status: int | None = None,
        errors_only: bool = False,
        since: datetime | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> list[Record]:
        t = RequestRecord
        q = select(*_COLUMNS).where(t.workspace_id == workspace_id)
        if route:
            q = q.where(t.route == route)
        if key_id:
            q = q.where(t.key_id == key_id)
        if status is not None:
            q = q.where(t.status == status)
        if errors_only:
            q = q.where(t.status >= 400)
        if since:
            q = q.where(t.at >= since)
        if before:
            q = q.where(t.at < before)
        q = q.order_by(t.at.desc(), t.seq.desc()).limit(limit)
        with self._db.transaction() as s:
            rows = s.execute(q).mappings().all()
        out = []
        for row in rows:
            item = dict(row)
            item["fallbacks"] = [f for f in (item["fallbacks"] or "").split(",") if f]
            out.append(Record(**item))
        return out

    def usage(self, *, workspace_id: str, since: datetime) -> list[dict[str, Any]]:
        t = RequestRecord
        q = (
            select(
                t.route,
                func.count(),
                func.sum(t.prompt_tokens),
                func.sum(t.completion_tokens),
                func.sum(t.cost_usd),
                func.avg(t.latency_ms),
            )
            .where(t.workspace_id == workspace_id, t.at >= since)
            .group_by(t.route)
            .order_by(t.route)
        )
        with self._db.transaction() as s:
            rows = s.execute(q).all()
        return [
            {
                "route": r,
                "requests": n,
                "prompt_tokens": int(p or 0),
                "completion_tokens": int(c or 0),
                "cost_usd": float(cost or 0),
                "avg_latency_ms": float(lat or 0),
            }
            for r, n, p, c, cost, lat in rows
        ]

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


class SqliteRecordStore(SqlRecordStore):
    """SQLite: datetimes as text in SQLAlchemy's format; our connections run in
    autocommit mode, so the batch's transaction is explicit."""

    def _row(self, record: Record) -> tuple[object, ...]:
        return _values(record, record.at.strftime("%Y-%m-%d %H:%M:%S.%f"))

    def _execute(self, cur: Any, rows: list[tuple[object, ...]]) -> None:
        cur.execute("BEGIN")
        try:
            cur.executemany(self._sql, rows)
        except Exception:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")


class PostgresRecordStore(SqlRecordStore):
    """PostgreSQL through psycopg, which adapts datetimes itself."""

    mark = "%s"


def record_store(db: Database) -> SqlRecordStore:
    return SqliteRecordStore(db) if db.is_sqlite else PostgresRecordStore(db)
