"""The PostgreSQL vector index: pgvector, HNSW (cosine), inside the metadata database.

Every replica searches the same index, so what one replica indexed the others find at
once (the embedded engine keeps a graph per process). A space (a knowledge base) is a
table of its own, `kbvec_<name>_<hash>`: `id` (the chunk id, a foreign key to
`kb_chunks` with `ON DELETE CASCADE`, so a deleted chunk's vector goes in the same
transaction), `embedding vector(dims)` under an HNSW index, and `tags jsonb` (the
chunk's scalar metadata) under a GIN index for filters.

The chunk rows stay the truth: their vectors are copied here after the commit that
wrote them. A process that stopped between the two leaves chunks without a vector;
the first use of a space in a process, and the server's start, add what is missing.

A filtered search walks the graph with `hnsw.iterative_scan = relaxed_order` (without
it, a selective filter leaves a search short of rows) and a wider candidate list, then
re-sorts what it found.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import text

from shipyard.retrieval.index import Where

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from shipyard.store.db import Database

log = logging.getLogger("shipyard.retrieval")

M, EF_CONSTRUCTION, EF_SEARCH = 16, 100, 64
EF_FILTERED = 200  # the candidate list of a filtered search (iterative scan)
BATCH = 2000


def available(db: Database) -> bool:
    """Whether the database is PostgreSQL with pgvector installed or installable."""
    if db.is_sqlite:
        return False
    with db.engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        ).first()
    return found is not None


def _literal(v: np.ndarray) -> str:
    """pgvector's text form of a vector ('[x, y, ...]')."""
    return str(np.asarray(v, dtype=np.float32).tolist())


def _tags(tags: Mapping[str, Any]) -> str:
    """The scalars of a chunk's metadata, which filters can match, as JSON."""
    return orjson.dumps(
        {k: v for k, v in tags.items() if isinstance(v, str | bool | int | float)}
    ).decode()


def _where(where: Where | None) -> tuple[str, dict[str, str]]:
    """A filter as SQL over `tags` (containment, so the GIN index serves it)."""
    if not where:
        return "", {}
    params: dict[str, str] = {}
    clauses = []
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        options = []
        for v in values:
            name = f"w{len(params)}"
            params[name] = orjson.dumps({key: v}).decode()
            options.append(f"tags @> CAST(:{name} AS jsonb)")
        clauses.append("(" + " OR ".join(options) + ")" if options else "false")
    return " WHERE " + " AND ".join(clauses), params


class PgVectorIndex:
    """The pgvector engine (see the module's docstring)."""

    engine = "pgvector"

    def __init__(self, db: Database) -> None:
        self.db = db
        self._dims: dict[str, int] = {}  # spaces this process has checked, their dims
        self._lock = threading.Lock()
        with db.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))

    @staticmethod
    def table(space: str) -> str:
        """A space's table: a safe name whatever the space's id holds."""
        slug = re.sub(r"[^a-z0-9]", "", space.lower())[:24]
        return f"kbvec_{slug}_{hashlib.sha1(space.encode()).hexdigest()[:10]}"

    def _exists(self, conn: Connection, space: str) -> int:
        """The space's dims when its table exists, else 0."""
        row = conn.execute(
            text(
                "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " WHERE c.relname = :t AND a.attname = 'embedding' AND c.relkind = 'r'"
                " AND pg_table_is_visible(c.oid)"
            ),
            {"t": self.table(space)},
        ).first()
        return int(row[0]) if row is not None else 0

    def _ready(self, space: str, dims: int) -> bool:
        """Make sure the space's table is there (created with `dims` when it is not) and
        holds every chunk's vector; False when it is not there and `dims` is 0."""
        if self._dims.get(space) == dims or (dims == 0 and space in self._dims):
            return True
        with self._lock:
            if self._dims.get(space) == dims or (dims == 0 and space in self._dims):
                return True
            t = self.table(space)
            with self.db.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": t})
                have = self._exists(conn, space)
                if not have and not dims:
                    return False
                if have and dims and have != dims:
                    raise ValueError(f"{dims}-dimensional vectors for a {have}-dimensional index")
                if not have:
                    conn.execute(
                        text(
                            f'CREATE TABLE "{t}" (id bigint PRIMARY KEY'
                            " REFERENCES kb_chunks (id) ON DELETE CASCADE,"
                            f" embedding vector({dims}) NOT NULL,"
                            " tags jsonb NOT NULL DEFAULT '{}')"
                        )
                    )
                    conn.execute(
                        text(
                            f'CREATE INDEX "{t}_hnsw" ON "{t}" USING hnsw'
                            f" (embedding vector_cosine_ops)"
                            f" WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})"
                        )
                    )
                    conn.execute(
                        text(f'CREATE INDEX "{t}_tags" ON "{t}" USING gin (tags jsonb_path_ops)')
                    )
                    have = dims
            self._fill(space)
            self._dims[space] = have
            return True

    def _fill(self, space: str) -> int:
        """Copy the vectors of the space's chunks that its table lacks; how many."""
        t = self.table(space)
        added, after = 0, -1
        while True:
            with self.db.engine.begin() as conn:
                rows = conn.execute(
                    text(
                        "SELECT c.id, c.vector, c.metadata FROM kb_chunks c"
                        f" WHERE c.kb_id = :s AND c.id > :after AND NOT EXISTS"
                        f' (SELECT 1 FROM "{t}" v WHERE v.id = c.id)'
                        " ORDER BY c.id LIMIT :n"
                    ),
                    {"s": space, "after": after, "n": BATCH},
                ).all()
                if not rows:
                    return added
                self._insert(
                    conn,
                    t,
                    [int(r[0]) for r in rows],
                    [np.frombuffer(r[1], dtype="<f4") for r in rows],
                    [_json(r[2]) for r in rows],
                )
            added += len(rows)
            after = int(rows[-1][0])

    @staticmethod
    def _insert(
        conn: Connection,
        table: str,
        ids: Sequence[int],
        vectors: Sequence[np.ndarray] | np.ndarray,
        tags: Sequence[Mapping[str, Any]],
    ) -> None:
        conn.execute(
            text(
                f'INSERT INTO "{table}" (id, embedding, tags)'
                " SELECT :id, CAST(:v AS vector), CAST(:t AS jsonb)"
                " WHERE EXISTS (SELECT 1 FROM kb_chunks WHERE id = :id)"  # raced a delete
                " ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding,"
                " tags = EXCLUDED.tags"
            ),
            [
                {"id": int(i), "v": _literal(v), "t": _tags(g)}
                for i, v, g in zip(ids, vectors, tags, strict=True)
            ],
        )

    def start(self) -> None:
        """Add what a stopped process left out, in every space that has a table."""
        with self.db.engine.connect() as conn:
            spaces = [r[0] for r in conn.execute(text("SELECT id FROM knowledge_bases")).all()]
        for space in spaces:
            try:
                self._ready(space, 0)
            except Exception:  # one broken space must not stop the others
                log.exception("vector index check of %s failed", space)

    # VectorIndex ----------------------------------------------------------------------

    def add(
        self, space: str, ids: Sequence[int], vectors: np.ndarray, tags: Sequence[Mapping[str, Any]]
    ) -> None:
        if not len(ids):
            return
        self._ready(space, int(vectors.shape[1]))
        t = self.table(space)
        for start in range(0, len(ids), BATCH):
            with self.db.engine.begin() as conn:
                self._insert(
                    conn,
                    t,
                    ids[start : start + BATCH],
                    vectors[start : start + BATCH],
                    tags[start : start + BATCH],
                )

    def remove(self, space: str, ids: Sequence[int]) -> None:
        if not ids or not self._ready(space, 0):
            return
        with self.db.engine.begin() as conn:
            conn.execute(
                text(f'DELETE FROM "{self.table(space)}" WHERE id = ANY(:ids)'),
                {"ids": [int(i) for i in ids]},
            )

    def search(
        self, space: str, dims: int, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        if dims <= 0 or k <= 0 or not self._ready(space, 0) or self._dims.get(space) != dims:
            return []
        filter_sql, params = _where(where)
        ef = max(EF_FILTERED if where else EF_SEARCH, k)
        with self.db.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {min(ef, 1000)}"))
            if where:
                conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            rows = conn.execute(
                text(
                    "WITH found AS MATERIALIZED (SELECT id, embedding <=> CAST(:q AS vector)"
                    f' AS distance FROM "{self.table(space)}"{filter_sql}'
                    " ORDER BY distance LIMIT :k)"
                    " SELECT id, distance FROM found ORDER BY distance"
                ),
                {"q": _literal(query), "k": int(k), **params},
            ).all()
        return [(int(i), 1.0 - float(d)) for i, d in rows]

    def count(self, space: str) -> int:
        if not self._ready(space, 0):
            return 0
        with self.db.engine.connect() as conn:
            return int(
                conn.execute(text(f'SELECT count(*) FROM "{self.table(space)}"')).scalar_one()
            )

    def drop(self, space: str) -> None:
        with self._lock:
            self._dims.pop(space, None)
            with self.db.engine.begin() as conn:
                conn.execute(text(f'DROP TABLE IF EXISTS "{self.table(space)}"'))

    def save(self) -> None:
        """Nothing to write: the database holds the index."""


def _json(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str | bytes):
        loaded = orjson.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return value if isinstance(value, dict) else {}
