"""The vector index contract, run on each engine: the embedded engine with its HNSW graph
and with exact search only (ids and vectors from a dict standing for the database's
chunk rows, the truth an engine rebuilds from), and pgvector on a real PostgreSQL
database, whose rows are real `kb_chunks` rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shipyard.capability import migration_folders
from shipyard.identity.models import Organization, Workspace
from shipyard.plugins import VectorIndex
from shipyard.retrieval.index import EXACT_BELOW, EmbeddedIndex
from shipyard.retrieval.pgvector import PgVectorIndex
from shipyard.retrieval.tables import ChunkRow, DocumentRow, KnowledgeBaseRow
from shipyard.store import Database
from tests.conftest import _pg_database

DIMS = 24


class Rows:
    """What the database holds: id -> (vector, tags), per space."""

    def __init__(self) -> None:
        self.spaces: dict[str, dict[int, tuple[np.ndarray, Mapping[str, Any]]]] = {}

    def put(
        self, space: str, ids: list[int], vectors: np.ndarray, tags: list[dict[str, Any]]
    ) -> None:
        for i, v, t in zip(ids, vectors, tags, strict=True):
            self.spaces.setdefault(space, {})[i] = (v, t)

    def drop(self, space: str, ids: list[int]) -> None:
        for i in ids:
            self.spaces.get(space, {}).pop(i, None)

    def source(self, space: str) -> Iterator[tuple[list[int], np.ndarray, list[Mapping[str, Any]]]]:
        rows = sorted(self.spaces.get(space, {}).items())
        for start in range(0, len(rows), 700):
            part = rows[start : start + 700]
            yield (
                [i for i, _ in part],
                np.stack([v for _, (v, _) in part]),
                [t for _, (_, t) in part],
            )


class PgRows(Rows):
    """The same, and real chunk rows in PostgreSQL (what pgvector's tables point at)."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        with db.transaction() as s:
            s.add(Organization(id="org_t", name="t"))
            s.flush()
            s.add(Workspace(id="ws_t", org_id="org_t", slug="t", name="t"))

    def put(
        self, space: str, ids: list[int], vectors: np.ndarray, tags: list[dict[str, Any]]
    ) -> None:
        super().put(space, ids, vectors, tags)
        with self.db.transaction() as s:
            if s.get(KnowledgeBaseRow, space) is None:
                s.add(
                    KnowledgeBaseRow(
                        id=space,
                        workspace_id="ws_t",
                        name=space,
                        embedding_route="e",
                        dimensions=DIMS,
                        chunking={},
                    )
                )
                s.flush()
                s.add(
                    DocumentRow(
                        id=f"d_{space}",
                        kb_id=space,
                        name="d",
                        format="txt",
                        content_hash="",
                        text="",
                    )
                )
                s.flush()
            rows = [
                {
                    "id": i,
                    "kb_id": space,
                    "document_id": f"d_{space}",
                    "position": i,
                    "text": "",
                    "tokens": 0,
                    "start": 0,
                    "end": 0,
                    "metadata": t,
                    "vector": v.astype("<f4").tobytes(),
                }
                for i, v, t in zip(ids, vectors, tags, strict=True)
            ]
            stmt = pg_insert(ChunkRow.__table__)
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={"metadata": stmt.excluded.metadata, "vector": stmt.excluded.vector},
                ),
                rows,
            )

    def drop(self, space: str, ids: list[int]) -> None:
        super().drop(space, ids)
        with self.db.transaction() as s:
            s.execute(delete(ChunkRow).where(ChunkRow.id.in_(ids)))


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.normal(size=(n, DIMS)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@pytest.fixture(params=["hnswlib", "exact", pytest.param("pgvector", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Rows, Path]]:
    if request.param != "pgvector":
        yield str(request.param), Rows(), tmp_path
        return
    db = Database(_pg_database(request.getfixturevalue("pg_server")))
    db.upgrade(migration_folders())
    yield "pgvector", PgRows(db), tmp_path
    db.close()


def make(kind: str, rows: Rows, folder: Path) -> VectorIndex:
    if isinstance(rows, PgRows):
        return PgVectorIndex(rows.db)
    return EmbeddedIndex(folder, rows.source, ann=kind == "hnswlib")


def fill(index: VectorIndex, rows: Rows, space: str, ids: list[int], vectors: np.ndarray) -> None:
    tags = [{"group": f"g{i % 10}", "even": i % 2 == 0, "n": i % 3} for i in ids]
    rows.put(space, ids, vectors, tags)
    index.add(space, ids, vectors, tags)


def exact_top(
    vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int, keep: Any = None
) -> list[int]:
    sims = vectors @ query
    order = [ids[n] for n in np.argsort(-sims) if keep is None or keep(ids[n])]
    return order[:k]


def test_nearest_neighbours_best_first_with_cosine_scores(engine: tuple[str, Rows, Path]) -> None:
    kind, rows, folder = engine
    index = make(kind, rows, folder)
    rng = np.random.default_rng(1)
    n = EXACT_BELOW * 3  # past the exact size: the graph answers on the hnswlib engine
    vectors, ids = unit(rng, n), list(range(1, n + 1))
    fill(index, rows, "kb1", ids, vectors)
    assert index.count("kb1") == n
    recall = []
    for q in unit(rng, 30):
        got = index.search("kb1", DIMS, q, 10)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        truth = exact_top(vectors, ids, q, 10)
        recall.append(len({i for i, _ in got} & set(truth)) / 10)
        best = got[0]
        assert best[1] == pytest.approx(float(vectors[best[0] - 1] @ q), abs=1e-4)
    assert np.mean(recall) >= 0.97
    # a vector finds itself first
    assert index.search("kb1", DIMS, vectors[41], 1)[0][0] == 42


def test_filters_match_tags_exactly(engine: tuple[str, Rows, Path]) -> None:
    kind, rows, folder = engine
    index = make(kind, rows, folder)
    rng = np.random.default_rng(2)
    n = 6000
    vectors, ids = unit(rng, n), list(range(1, n + 1))
    fill(index, rows, "kb1", ids, vectors)
    q = unit(rng, 1)[0]
    # selective (exact inside the allowed set) and broad (the graph with a filter)
    for where, keep in (
        ({"group": "g3"}, lambda i: i % 10 == 3),
        ({"even": True}, lambda i: i % 2 == 0),
        ({"group": ["g1", "g2"], "n": 0}, lambda i: i % 10 in (1, 2) and i % 3 == 0),
    ):
        got = [i for i, _ in index.search("kb1", DIMS, q, 10, where)]
        assert got and all(keep(i) for i in got), where
        truth = exact_top(vectors, ids, q, 10, keep)
        assert len(set(got) & set(truth)) >= 9, where
    assert index.search("kb1", DIMS, q, 10, {"group": "nope"}) == []
    assert index.search("kb1", DIMS, q, 10, {"missing": "x"}) == []


def test_a_filter_asked_again_sees_what_changed_since(engine: tuple[str, Rows, Path]) -> None:
    kind, rows, folder = engine
    index = make(kind, rows, folder)
    rng = np.random.default_rng(5)
    n = 2000
    vectors, ids = unit(rng, n), list(range(1, n + 1))
    fill(index, rows, "kb1", ids, vectors)
    where = {"group": "g3"}

    def found(query: np.ndarray) -> set[int]:
        return {i for i, _ in index.search("kb1", DIMS, query, n, where)}

    q = unit(rng, 1)[0]
    before = found(q)
    assert before == {i for i in ids if i % 10 == 3}
    # a new id with the tag, an id re-tagged out of the group, one removed
    extra = unit(rng, 1)
    rows.put("kb1", [n + 1], extra, [{"group": "g3"}])
    index.add("kb1", [n + 1], extra, [{"group": "g3"}])
    rows.put("kb1", [3], vectors[2:3], [{"group": "g4"}])
    index.add("kb1", [3], vectors[2:3], [{"group": "g4"}])
    index.remove("kb1", [13])
    rows.drop("kb1", [13])
    assert found(q) == (before | {n + 1}) - {3, 13}
    assert {i for i, _ in index.search("kb1", DIMS, q, n, {"group": "g4"})} >= {3}
    assert index.count("kb1") == n


def test_spaces_are_apart_and_removes_and_drops_really_remove(
    engine: tuple[str, Rows, Path],
) -> None:
    kind, rows, folder = engine
    index = make(kind, rows, folder)
    rng = np.random.default_rng(3)
    a, b = unit(rng, 50), unit(rng, 50)
    fill(index, rows, "kbA", list(range(1, 51)), a)
    fill(index, rows, "kbB", list(range(101, 151)), b)
    assert {i for i, _ in index.search("kbA", DIMS, b[0], 50)} <= set(range(1, 51))
    index.remove("kbA", [1, 2, 3])
    rows.drop("kbA", [1, 2, 3])
    got = {i for i, _ in index.search("kbA", DIMS, a[0], 50)}
    assert not got & {1, 2, 3} and index.count("kbA") == 47
    # an id added again is replaced, not doubled
    moved = unit(rng, 1)
    fill(index, rows, "kbA", [10], moved)
    assert index.search("kbA", DIMS, moved[0], 1)[0][0] == 10
    assert index.count("kbA") == 47
    index.drop("kbA")
    rows.spaces.pop("kbA")
    assert index.search("kbA", DIMS, a[5], 5) == []
    assert index.search("kbB", DIMS, b[5], 1)[0][0] == 106


def test_a_new_process_rebuilds_or_reloads_and_reconciles_with_the_rows(
    engine: tuple[str, Rows, Path],
) -> None:
    kind, rows, folder = engine
    index = make(kind, rows, folder)
    rng = np.random.default_rng(4)
    n = EXACT_BELOW * 2
    vectors, ids = unit(rng, n), list(range(1, n + 1))
    fill(index, rows, "kb1", ids, vectors)
    index.save()
    # after the snapshot, the database changed: rows gone, rows added (a killed server)
    rows.drop("kb1", [5, 6])
    extra = unit(rng, 3)
    rows.put("kb1", [n + 1, n + 2, n + 3], extra, [{"group": "late"}] * 3)
    again = make(kind, rows, folder)
    if kind != "pgvector":
        assert again.count("kb1") == 0  # nothing loaded before the first use
    found = [i for i, _ in again.search("kb1", DIMS, vectors[4], 20)]
    assert 5 not in found and 6 not in found
    assert again.count("kb1") == n + 1
    assert again.search("kb1", DIMS, extra[1], 1)[0][0] == n + 2
    assert {i for i, _ in again.search("kb1", DIMS, extra[0], 5, {"group": "late"})} == {
        n + 1,
        n + 2,
        n + 3,
    }
    # a torn snapshot is rebuilt from the rows
    for f in folder.glob("*.hnsw"):
        f.write_bytes(b"garbage")
    third = make(kind, rows, folder)
    assert third.search("kb1", DIMS, extra[2], 1)[0][0] == n + 3
