"""Trace stores: `open_store(url)` picks the engine from the URL.

    sqlite:///relative/traces.db  sqlite:////abs/traces.db   -> SqliteTraceStore
    postgresql://...  postgresql+psycopg://...                -> PostgresTraceStore

Both implement `shipyard.plugins.TraceStore`; tests/tracing/test_store_contract.py runs
one suite on each."""

from __future__ import annotations

from shipyard.errors import ConfigError
from shipyard.plugins import TraceStore


def open_store(url: str) -> TraceStore:
    """The trace store at `url`, its schema created or checked. Raises ConfigError."""
    scheme, sep, rest = url.partition("://")
    driver = scheme.split("+", 1)[0].lower()
    if driver == "sqlite" and sep:
        path = rest[1:] if rest.startswith("/") else ""
        if not path or path == ":memory:" or "?" in path:
            raise ConfigError(
                "trace store URL: sqlite:///path/traces.db (a file; no memory database)"
            )
        from shipyard.tracing.store.sqlite import SqliteTraceStore

        return SqliteTraceStore(path)
    if driver in ("postgresql", "postgres") and sep:
        from shipyard.tracing.store.postgres import PostgresTraceStore

        return PostgresTraceStore("postgresql://" + rest)
    raise ConfigError("trace store URL: sqlite:///path or postgresql://...")
