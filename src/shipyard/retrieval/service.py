"""The retrieval capability's service: the vector index (the embedded engine, its
snapshots under the data dir's `indexes/`, or pgvector in the PostgreSQL database), the
indexing worker, the source tables' syncs, and search."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from shipyard.errors import ConfigError, ShipyardError, Unavailable
from shipyard.identity.actor import Actor
from shipyard.plugins import Candidate, RerankContext, Reranker
from shipyard.retrieval import pgvector, rerank
from shipyard.retrieval import search as searching
from shipyard.retrieval.index import Batch, EmbeddedIndex
from shipyard.retrieval.ingest import Indexer
from shipyard.retrieval.schemas import SearchIn
from shipyard.retrieval.sync import Syncer
from shipyard.retrieval.tables import ChunkRow, KnowledgeBaseRow

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.plugins import VectorIndex

BATCH = 5000
log = logging.getLogger("shipyard.retrieval")


class Retrieval:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.index: VectorIndex = self._engine()
        self._rerankers: dict[str, Reranker] = {}
        self.indexer = Indexer(
            platform, self.index, slots=settings.kb_index_workers, lease_s=settings.kb_lease_seconds
        )
        self.syncer = Syncer(
            platform, enabled=settings.kb_sync_enabled, lease_s=settings.kb_lease_seconds
        )

    def _engine(self) -> VectorIndex:
        settings, db = self.platform.settings, self.platform.db
        choice = settings.kb_index_engine
        has = choice != "embedded" and pgvector.available(db)
        if choice == "pgvector" or (choice == "auto" and has):
            if not has:
                raise ConfigError(
                    "kb_index_engine: pgvector needs a PostgreSQL database with the "
                    "pgvector extension installed"
                )
            return pgvector.PgVectorIndex(db)
        return EmbeddedIndex(settings.home / "indexes", self._vectors)

    async def start(self) -> None:
        start = getattr(self.index, "start", None)
        if start is not None:  # pgvector: add what a stopped process left out
            await asyncio.to_thread(start)
        await self.indexer.start()
        await self.syncer.start()

    async def stop(self) -> None:
        await self.syncer.stop()
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
        reranker = self._reranker(body.rerank) if body.rerank else None
        n = max(body.k * 4, 20)
        keep = n if reranker is not None else body.k  # a reranker sees every candidate
        vector: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        gateway = self.platform.services["gateway"]

        async def embed(texts: list[str]) -> list[list[float]]:
            got = await gateway.embed(texts, model=kb.embedding_route, actor=actor)
            vectors: list[list[float]] = got.vectors
            return vectors

        query: np.ndarray | None = None
        if (body.mode in ("hybrid", "vector") or reranker is not None) and kb.dimensions:
            query = searching.query_vector(await embed([body.query]))
        if body.mode in ("hybrid", "vector") and query is not None:
            vector = await asyncio.to_thread(
                self.index.search, kb.id, kb.dimensions, query, n, body.where or None
            )
        if body.mode in ("hybrid", "lexical"):
            lexical = await asyncio.to_thread(self._lexical, kb.id, body.query, n, body.where)
        if body.mode == "vector":
            hits = searching.fuse(vector, [], vector_weight=1, lexical_weight=0, k=keep)
        elif body.mode == "lexical":
            hits = searching.fuse([], lexical, vector_weight=0, lexical_weight=1, k=keep)
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
                k=keep,
            )
        scores = dict(lexical)
        rows = await asyncio.to_thread(self._chunks, kb, [h.chunk_id for h in hits])
        hits = [h for h in hits if h.chunk_id in rows]  # a delete that raced the search
        reranked: dict[int, float] = {}
        if reranker is not None and hits:
            reranked = await self._rerank(reranker, body.query, query, embed, hits, rows)
            hits = sorted(hits, key=lambda h: -reranked[h.chunk_id])[: body.k]
        out = []
        for h in hits:
            row, document = rows[h.chunk_id]
            score = h.score
            if reranked:
                score = reranked[h.chunk_id]
            elif body.mode == "vector":
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
                    "rerank_score": reranked.get(h.chunk_id),
                    "metadata": row.metadata_ or {},
                }
            )
        return out

    def _reranker(self, name: str) -> Reranker:
        """Built once per name: a reranker may load a model when it is constructed."""
        found = self._rerankers.get(name)
        if found is None:
            found = self._rerankers[name] = rerank.load(self.platform.plugins, name)
        return found

    async def _rerank(
        self,
        reranker: Reranker,
        text: str,
        query: np.ndarray | None,
        embed: Callable[[list[str]], Awaitable[list[list[float]]]],
        hits: list[Any],
        rows: dict[int, tuple[ChunkRow, str]],
    ) -> dict[int, float]:
        candidates = [
            Candidate(
                chunk_id=h.chunk_id,
                text=rows[h.chunk_id][0].text,
                vector=np.frombuffer(rows[h.chunk_id][0].vector, dtype="<f4"),
                metadata=rows[h.chunk_id][0].metadata_ or {},
            )
            for h in hits
        ]
        name = getattr(reranker, "name", type(reranker).__name__)
        try:
            scores = await reranker.rerank(text, candidates, RerankContext(query, embed))
            if len(scores) != len(candidates):
                raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
            return {c.chunk_id: float(x) for c, x in zip(candidates, scores, strict=True)}
        except ShipyardError:
            raise
        except Exception as exc:  # a plugin's failure is not the caller's 500
            log.warning("reranker %s failed: %s", name, type(exc).__name__)
            raise Unavailable(f"the reranker '{name}' failed: {type(exc).__name__}") from None

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
