"""Reading a source table: its configuration checked (addresses like a provider's, files
only for platform administrators and never under the data dir), a read-only connection
to the SQLite file or the PostgreSQL server (to the address that was checked), and the
queries a sync needs (see `shipyard.retrieval.sync`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shipyard.errors import InvalidInput, PermissionDenied
from shipyard.gateway.providers.urlcheck import check_host

if TYPE_CHECKING:
    from shipyard.identity.actor import Actor
    from shipyard.retrieval.schemas import SourceIn

BATCH = 500  # rows a query reads

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 60_000


class SourceError(Exception):
    """The source cannot be read (connection, missing table or column): the sync fails
    with this message, which names what is wrong and never a password."""


@dataclass(frozen=True)
class Spec:
    kind: str
    location: str
    allow_internal: bool
    table: str
    id_column: str
    text_column: str
    updated_column: str | None
    metadata_columns: tuple[str, ...]


# configuration -----------------------------------------------------------------------


def checked(body: SourceIn, actor: Actor, data_dir: Path) -> tuple[str, str]:
    """(location to seal, location to show), or a 4xx naming the field."""
    if body.allow_internal and not actor.platform_admin:
        raise PermissionDenied(
            "allow_internal: only a platform administrator may allow internal addresses"
        )
    if body.kind == "sqlite":
        if not actor.platform_admin:
            raise PermissionDenied(
                "location: only a platform administrator may sync from a file on the server"
            )
        path = Path(body.location)
        if not path.is_absolute():
            raise InvalidInput("location: a SQLite source is an absolute path to its file")
        real = path.resolve()
        if real.is_relative_to(data_dir.resolve()):
            raise InvalidInput("location: a file under Shipyard's data directory is not a source")
        if not real.is_file():
            raise InvalidInput(f"location: no file at {path}")
        return str(real), str(real)
    try:
        url = make_url(body.location)
        _ = url.port  # a port that is not a number fails here, not at the first sync
    except (ArgumentError, ValueError):
        raise InvalidInput("location: not a postgresql:// URL") from None
    if url.drivername.split("+")[0] not in ("postgresql", "postgres"):
        raise InvalidInput("location: a PostgreSQL source is a postgresql:// URL")
    if not url.host and not body.allow_internal:
        raise InvalidInput("location: a Unix socket is internal; allow_internal permits it")
    if url.query and not body.allow_internal:
        raise InvalidInput("location: connection options need allow_internal")
    if url.host:
        check_host(url.host, field="location", allow_internal=body.allow_internal)
    # shown without a password: neither the userinfo's nor one in the query
    secret = {k: "***" for k in url.query if k.lower() in ("password", "sslpassword")}
    shown = (
        url.set(drivername="postgresql")
        .update_query_dict(secret)
        .render_as_string(hide_password=True)
    )
    return url.set(drivername="postgresql").render_as_string(hide_password=False), shown


# reading a source -----------------------------------------------------------------------


def _quoted(name: str) -> str:
    """An identifier (checked against a strict pattern on input) quoted, a schema kept."""
    return ".".join(f'"{part}"' for part in name.split("."))


class Reader:
    """A read-only connection to a source, and the three queries a sync needs."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.pg = spec.kind == "postgres"
        self.conn: Any = self._connect()
        self._cast = self._id_cast = ""
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> Any:
        spec = self.spec
        if not self.pg:
            uri = f"file:{quote(spec.location)}?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)
                conn.execute("SELECT 1")
            except sqlite3.Error as exc:
                raise SourceError(f"the SQLite file cannot be opened: {exc}") from None
            return conn
        import psycopg

        url = make_url(spec.location)
        extra: dict[str, Any] = {}
        if url.host and not spec.allow_internal:
            # connect to the address that was checked now (DNS rebinding)
            found = check_host(url.host, field="location", allow_internal=False)
            if not found:
                raise SourceError(f"the host {url.host} does not resolve")
            extra["hostaddr"] = str(found[0])
        try:
            return psycopg.connect(
                spec.location,
                connect_timeout=CONNECT_TIMEOUT_S,
                autocommit=True,
                options=f"-c default_transaction_read_only=on "
                f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC",
                **extra,
            )
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.pg:
            sql = sql.replace("?", "%s")
        try:
            return [tuple(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]
        except Exception as exc:  # the driver's errors: a missing column, a timeout
            raise SourceError(f"reading {self.spec.table} failed: {_first_line(exc)}") from None

    def _check(self) -> None:
        """The table and every named column are there (one query that reads no row)."""
        s = self.spec
        columns = [s.id_column, s.text_column, *s.metadata_columns]
        if s.updated_column:
            columns.append(s.updated_column)
        if not self.pg:
            # SQLite reads a quoted name that is no column as a string: ask its catalog
            schema, _, table = s.table.rpartition(".")
            have = {r[1] for r in self._rows(f'PRAGMA "{schema or "main"}".table_info("{table}")')}
            if not have:
                raise SourceError(f"the table {s.table} is not in the SQLite file")
            missing = [c for c in columns if c not in have]
            if missing:
                raise SourceError(f"the table {s.table} has no column {', '.join(missing)}")
        names = ", ".join(_quoted(c) for c in columns)
        self._rows(f"SELECT {names} FROM {_quoted(s.table)} WHERE 1 = 0")
        if self.pg and s.updated_column:
            types = dict(
                self._rows(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = CAST(? AS regclass) AND attnum > 0",
                    (_quoted(s.table),),
                )
            )
            self._cast = types.get(s.updated_column, "text")
            self._id_cast = types.get(s.id_column, "text")

    def _with_text(self) -> str:
        """The rows that are documents: those with text (as `_parsed` reads them)."""
        col = _quoted(self.spec.text_column)
        return f" WHERE {col} IS NOT NULL AND TRIM(CAST({col} AS TEXT)) <> ''"

    def ids(self) -> set[str]:
        s = self.spec
        return {
            row_key(r[0])
            for r in self._rows(
                f"SELECT {_quoted(s.id_column)} FROM {_quoted(s.table)}{self._with_text()}"
            )
        }

    def count(self) -> int:
        return int(
            self._rows(f"SELECT count(*) FROM {_quoted(self.spec.table)}{self._with_text()}")[0][0]
        )

    def _select(self) -> str:
        s = self.spec
        cols = [s.id_column, s.text_column, *s.metadata_columns]
        out = ", ".join(_quoted(c) for c in cols)
        if s.updated_column:
            u = _quoted(s.updated_column)
            out += f", {u}" + (f", CAST({u} AS text)" if self.pg else "")
        return f"SELECT {out} FROM {_quoted(self.spec.table)}"

    def every(self) -> Iterator[list[tuple[Any, ...]]]:
        """Every row, in id order, in batches."""
        s = self.spec
        after: Any = None
        idc = _quoted(s.id_column)
        while True:
            where = f" WHERE {idc} > ?" if after is not None else ""
            rows = self._rows(
                f"{self._select()}{where} ORDER BY {idc} LIMIT {BATCH}",
                (after,) if after is not None else (),
            )
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def changed(self, watermark: str | None) -> Iterator[list[tuple[Any, ...]]]:
        """Rows after the watermark in (updated-at, id) order, in batches; a row's last
        two values are its updated-at and the watermark it moves to."""
        s = self.spec
        assert s.updated_column
        u, idc = _quoted(s.updated_column), _quoted(s.id_column)
        mark = _unmark(watermark)
        while True:
            params: tuple[Any, ...] = ()
            where = f" WHERE {u} IS NOT NULL"
            if mark is not None:
                at, last = mark
                value = f"CAST(? AS {self._cast})" if self.pg else "?"
                after = f"CAST(? AS {self._id_cast})" if self.pg else "?"
                where += f" AND ({u} > {value} OR ({u} = {value} AND {idc} > {after}))"
                params = (at, at, last if not self.pg else str(last))
            rows = self._rows(f"{self._select()}{where} ORDER BY {u}, {idc} LIMIT {BATCH}", params)
            if not rows:
                return
            yield rows
            mark = (plain(rows[-1][-1]), plain(rows[-1][0]))

    @staticmethod
    def mark_of(row: tuple[Any, ...]) -> str:
        """The watermark after `row` (from `changed`): its updated-at (PostgreSQL's text
        form of it there) and its id."""
        return orjson.dumps([plain(row[-1]), plain(row[0])]).decode()


def _unmark(watermark: str | None) -> tuple[Any, Any] | None:
    if not watermark:
        return None
    try:
        at, last = orjson.loads(watermark)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    return at, last


def plain(value: Any) -> Any:
    """A value as JSON can keep it (for watermarks and metadata)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    return str(value)


def row_key(value: Any) -> str:
    return str(plain(value))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
