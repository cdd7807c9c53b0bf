"""The retrieval capability's service: the vector index (the embedded engine, its
snapshots under the data dir's `indexes/`), the indexing worker, and search."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from shipyard.identity.actor import Actor
from shipyard.retrieval import search as searching
from shipyard.retrieval.index import Batch, EmbeddedIndex
from shipyard.retrieval.ingest import Indexer
from shipyard.retrieval.schemas import SearchIn
from shipyard.retrieval.tables import ChunkRow, KnowledgeBaseRow

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.plugins import VectorIndex

BATCH = 5000


class Retrieval:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.index: VectorIndex = EmbeddedIndex(settings.home / "indexes", self._vectors)
        self.indexer = Indexer(
            platform, self.index, slots=settings.kb_index_workers, lease_s=settings.kb_lease_seconds
        )

    async def start(self) -> None:
        await self.indexer.start()

    async def stop(self) -> None:
        await self.indexer.stop()
        await asyncio.to_thread(self.index.save)

    def queued(self) -> None:
        self.indexer.poke()

    # what the embedded index loads a space from -------------------------------------------

    def _vectors(self, space: str) -> Iterator[Batch]:
        after = -1
        while True:
            with self.platform.db.transaction() as s:
                rows = s.execute(
                    select(ChunkRow.id, ChunkRow.vector, ChunkRow.metadata_)
                    .where(ChunkRow.kb_id == space, ChunkRow.id > after)
                    .order_by(ChunkRow.id)
                    .limit(BATCH)
                ).all()
            if not rows:
                return
            ids = [int(r[0]) for r in rows]
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
            yield ids, matrix, [r[2] or {} for r in rows]
            after = ids[-1]

    # search ----------------------------------------------------------------------------------

    async def search(
        self, kb: KnowledgeBaseRow, body: SearchIn, actor: Actor
    ) -> list[dict[str, Any]]:
        settings = self.platform.settings
        n = max(body.k * 4, 20)
        vector: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        if body.mode in ("hybrid", "vector") and kb.dimensions:
            gateway = self.platform.services["gateway"]
            got = await gateway.embed([body.query], model=kb.embedding_route, actor=actor)
            query = searching.query_vector(got.vectors)
            vector = await asyncio.to_thread(
                self.index.search, kb.id, kb.dimensions, query, n, body.where or None
            )
        if body.mode in ("hybrid", "lexical"):
            lexical = await asyncio.to_thread(self._lexical, kb.id, body.query, n, body.where)
        if body.mode == "vector":
            hits = searching.fuse(vector, [], vector_weight=1, lexical_weight=0, k=body.k)
        elif body.mode == "lexical":
            hits = searching.fuse([], lexical, vector_weight=0, lexical_weight=1, k=body.k)
        else:
            hits = searching.fuse(
                vector,
                lexical,
                vector_weight=settings.kb_vector_weight
                if body.vector_weight is None
                else body.vector_weight,
                lexical_weight=settings.kb_lexical_weight
                if body.lexical_weight is None
                else body.lexical_weight,
                k=body.k,
            )
        scores = dict(lexical)
        rows = await asyncio.to_thread(self._chunks, kb, [h.chunk_id for h in hits])
        out = []
        for h in hits:
            found = rows.get(h.chunk_id)
            if found is None:
                continue
            row, document = found
            score = h.score
            if body.mode == "vector":
                score = h.vector_score or 0.0
            elif body.mode == "lexical":
                score = scores.get(h.chunk_id, 0.0)
            out.append(
                {
                    "chunk_id": row.id,
                    "document": document,
                    "position": row.position,
                    "text": row.text,
                    "score": score,
                    "vector_score": h.vector_score,
                    "vector_rank": h.vector_rank,
                    "lexical_rank": h.lexical_rank,
                    "metadata": row.metadata_ or {},
                }
            )
        return out

    def _lexical(
        self, kb_id: str, query: str, n: int, where: dict[str, Any]
    ) -> list[tuple[int, float]]:
        with self.platform.db.transaction() as s:
            return searching.lexical(s, kb_id, query, n, where, sqlite=self.platform.db.is_sqlite)

    def _chunks(self, kb: KnowledgeBaseRow, ids: list[int]) -> dict[int, tuple[ChunkRow, str]]:
        with self.platform.db.transaction() as s:
            found = searching.chunks(s, kb, ids)
            s.expunge_all()
            return found
