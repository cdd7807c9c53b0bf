"""Search over a knowledge base: vector (the index), lexical (the database's full-text
index: SQLite FTS5 with BM25, PostgreSQL `tsvector` with `ts_rank_cd`) and hybrid, the
two rankings fused by reciprocal rank (`weight / (RRF_K + rank)` summed over the
rankings a chunk is in; the weights are the settings `kb_vector_weight` and
`kb_lexical_weight`, or the request's). Metadata filters apply inside both rankings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, column, func, literal_column, or_, select, table, text
from sqlalchemy.orm import Session

from shipyard.retrieval.tables import ChunkRow, DocumentRow, KnowledgeBaseRow

RRF_K = 60
MAX_TERMS = 64
WORD = re.compile(r"\w+")


@dataclass
class Hit:
    chunk_id: int
    score: float
    vector_score: float | None = None
    vector_rank: int | None = None
    lexical_rank: int | None = None


def terms(query: str) -> list[str]:
    return list(dict.fromkeys(t.lower() for t in WORD.findall(query)))[:MAX_TERMS]


def _metadata_filter(where: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    out = []
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        field = ChunkRow.metadata_[key]
        alternatives = []
        for v in values:
            if isinstance(v, bool):
                alternatives.append(field.as_boolean() == v)
            elif isinstance(v, int | float):
                alternatives.append(field.as_float() == float(v))
            else:
                alternatives.append(field.as_string() == str(v))
        out.append(alternatives[0] if len(alternatives) == 1 else or_(*alternatives))
    return out


def lexical(
    s: Session, kb_id: str, query: str, n: int, where: Mapping[str, Any], *, sqlite: bool
) -> list[tuple[int, float]]:
    """Up to `n` (chunk id, score), best first; any of the query's words matches."""
    words = terms(query)
    if not words:
        return []
    filters = [ChunkRow.kb_id == kb_id, *_metadata_filter(where)]
    if sqlite:
        fts = table("kb_chunks_fts", column("rowid"))
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        rank = func.bm25(literal_column("kb_chunks_fts"))
        stmt = (
            select(ChunkRow.id, rank.label("rank"))
            .select_from(fts.join(ChunkRow.__table__, ChunkRow.id == fts.c.rowid))
            .where(text("kb_chunks_fts MATCH :match").bindparams(match=match), *filters)
            .order_by(rank)
            .limit(n)
        )
        return [(int(i), -float(r)) for i, r in s.execute(stmt).all()]
    vector = func.to_tsvector(literal_column("'simple'"), ChunkRow.text)
    tsq = func.to_tsquery(literal_column("'simple'"), " | ".join(words))
    rank = func.ts_rank_cd(vector, tsq)
    stmt = (
        select(ChunkRow.id, rank.label("rank"))
        .where(vector.op("@@")(tsq), and_(*filters))
        .order_by(rank.desc())
        .limit(n)
    )
    return [(int(i), float(r)) for i, r in s.execute(stmt).all()]


def fuse(
    vector: Sequence[tuple[int, float]],
    lexical_: Sequence[tuple[int, float]],
    *,
    vector_weight: float,
    lexical_weight: float,
    k: int,
) -> list[Hit]:
    hits: dict[int, Hit] = {}
    for rank, (chunk, sim) in enumerate(vector, 1):
        hit = hits.setdefault(chunk, Hit(chunk, 0.0))
        hit.vector_score, hit.vector_rank = sim, rank
        hit.score += vector_weight / (RRF_K + rank)
    for rank, (chunk, _) in enumerate(lexical_, 1):
        hit = hits.setdefault(chunk, Hit(chunk, 0.0))
        hit.lexical_rank = rank
        hit.score += lexical_weight / (RRF_K + rank)
    ranked = sorted(
        hits.values(),
        key=lambda h: (-h.score, h.vector_rank or 1 << 30, h.lexical_rank or 1 << 30),
    )
    return ranked[:k]


def chunks(s: Session, kb: KnowledgeBaseRow, ids: Sequence[int]) -> dict[int, tuple[ChunkRow, str]]:
    """Chunk rows of the knowledge base with their documents' names, by id (an id no
    longer in the database is left out: a delete that raced the search)."""
    if not ids:
        return {}
    rows = s.execute(
        select(ChunkRow, DocumentRow.name)
        .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
        .where(ChunkRow.kb_id == kb.id, ChunkRow.id.in_(list(ids)))
    ).all()
    return {row.id: (row, name) for row, name in rows}


def query_vector(vectors: list[list[float]]) -> np.ndarray:
    v = np.asarray(vectors[0], dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v
