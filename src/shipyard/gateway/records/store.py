"""Request-record stores, one per engine, behind `shipyard.plugins.RecordStore`.

Writes are plain DBAPI `executemany` on a connection of the store's own (the driver
works outside the GIL and no ORM runs per row); reads go through SQLAlchemy Core.
Writing is idempotent (the request id is unique: a record replayed from the write-ahead
log after a crash may already be stored), and strings are made storable first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, select

from shipyard.gateway.records.record import Record
from shipyard.gateway.tables import RequestRecord
from shipyard.store import Database

_TABLE = RequestRecord.__table__
_FIELDS = tuple(f.name for f in fields(Record))
_COLUMNS = [c for c in _TABLE.columns if c.name in _FIELDS]
# what a row stores, in `_values` order (a call's span ids live in the trace store)
_STORED = tuple(f for f in _FIELDS if f in _TABLE.columns)


_LENGTH = {c.name: c.type.length for c in _COLUMNS if isinstance(c.type, String) and c.type.length}
_INT32 = (-(2**31), 2**31 - 1)


def _text(value: object, column: str) -> object:
    """A string every engine's text column takes: NUL replaced (PostgreSQL refuses it
    and, with it, the whole batch), valid UTF-8 (no lone surrogates), cut to the
    column's length (PostgreSQL refuses longer)."""
    if type(value) is not str:
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode()
    return value[: _LENGTH[column]]


def _int(value: object) -> object:
    if type(value) is int and not _INT32[0] <= value <= _INT32[1]:
        return max(_INT32[0], min(_INT32[1], value))
    return value


def _float(value: object) -> object:
    """NaN and infinities become None (SQLite stores NaN as NULL anyway)."""
    if type(value) is float and not math.isfinite(value):
        return None
    return value


def _values(record: Record, at: object) -> tuple[object, ...]:
    return (
        _text(record.id, "id"),
        at,
        _text(record.workspace_id, "workspace_id"),
        _text(record.key_id, "key_id"),
        _text(record.api, "api"),
        _int(record.status),
        _text(record.end_user, "end_user"),
        _text(record.route, "route"),
        _text(record.deployment_id, "deployment_id"),
        _text(record.provider, "provider"),
        _text(record.model, "model"),
        _text(record.error_class, "error_class"),
        _float(record.latency_ms) or 0.0,
        _float(record.ttft_ms),
        _int(record.prompt_tokens),
        _int(record.completion_tokens),
        _float(record.cost_usd) or 0.0,
        record.cache_hit,
        record.stream,
        _int(record.retries),
        _text(",".join(record.fallbacks), "fallbacks"),
        _text(record.trace_id, "trace_id"),
        _text(record.prompt, "prompt"),
    )


class SqlRecordStore:
    """What both engines share: the query side, and the writer's connection."""

    mark = "?"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql = (
            f"INSERT INTO {RequestRecord.__tablename__} ({', '.join(_STORED)}) "
            f"VALUES ({', '.join([self.mark] * len(_STORED))}) "
            "ON CONFLICT (id) DO NOTHING"  # idempotent: a replayed record may be stored
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

    def spend(self, *, since: datetime | None) -> list[tuple[str, str, str, float]]:
        """The spend ledger's sums since `since` (None: all time), per workspace, key
        and end user: what budget counters are rebuilt from."""
        t = RequestRecord
        q = select(t.workspace_id, t.key_id, t.end_user, func.sum(t.cost_usd)).where(t.cost_usd > 0)
        if since is not None:
            q = q.where(t.at >= since)
        q = q.group_by(t.workspace_id, t.key_id, t.end_user)
        with self._db.transaction() as s:
            rows = s.execute(q).all()
        return [(w, k, u or "", float(c or 0)) for w, k, u, c in rows]

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
