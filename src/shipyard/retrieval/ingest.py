"""The local worker that indexes documents: chunk, embed through the gateway (as the
actor who added them, governed and recorded like any call), write.

A document is claimed with a lease (a compare-and-set on its status and lease), renewed
between embedding calls; a document whose worker stopped or was killed is claimed again
once its lease passes. Its chunks and vectors are written in one transaction that
replaces its old ones, and only while this worker still holds it with the same content
(a newer upload or a cancel in between wins): a document is indexed whole or not at all.
The vector index is told after the commit (see `index`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, or_, select, update

from shipyard.errors import ShipyardError
from shipyard.identity.actor import Actor
from shipyard.identity.stored import still_valid
from shipyard.retrieval import chunking
from shipyard.retrieval.chunking import ChunkingIn, Piece, Tokens
from shipyard.retrieval.tables import ChunkRow, DocumentRow, IngestionRow, KnowledgeBaseRow
from shipyard.store import new_id, utcnow

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.plugins import VectorIndex

log = logging.getLogger("shipyard.retrieval")
EMBED_BATCH = 128  # texts per embeddings call


class Stopped(Exception):
    """The document was cancelled, replaced, removed, or passed to another worker."""


@dataclass
class Job:
    doc: DocumentRow
    kb: KnowledgeBaseRow
    actor: Actor | str


@dataclass
class Progress:
    chunks: int = 0
    embedded: int = 0
    errors: list[str] = field(default_factory=list)


def tags_of(doc_name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {**metadata, "document": doc_name}


def as_matrix(vectors: list[list[float]]) -> np.ndarray:
    """Rows normalized to unit length (cosine = dot product); a zero row stays zero."""
    m = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(m / norms, dtype=np.float32)


class Indexer:
    def __init__(
        self, platform: Platform, index: VectorIndex, *, slots: int, lease_s: float
    ) -> None:
        self.platform = platform
        self.slots = slots
        self.index = index
        self.worker = new_id("wk")
        self.lease = timedelta(seconds=lease_s)
        self.active: dict[str, asyncio.Task[None]] = {}
        self.progress: dict[str, Progress] = {}
        self.wake = asyncio.Event()
        self._tokens: dict[str, Tokens] = {}
        self._loop: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        if self.slots:
            self._loop = asyncio.create_task(self._claiming(), name="kb-indexer")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self.active.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:  # one by one: a task of a loop already closed is left, not raised
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.active:  # hand them back: any worker takes them up at once
            ids = list(self.active)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release, ids)
        self.active.clear()

    def poke(self) -> None:
        """Claim now rather than at the next poll (thread-safe)."""
        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: it stopped
                self._event_loop.call_soon_threadsafe(self.wake.set)

    def cancel(self, doc_ids: list[str]) -> None:
        if self._event_loop is None:
            return
        for doc_id in doc_ids:
            task = self.active.get(doc_id)
            if task is not None:
                with contextlib.suppress(RuntimeError):
                    self._event_loop.call_soon_threadsafe(task.cancel)

    def _release(self, ids: list[str]) -> None:
        with self.platform.db.transaction() as s:
            s.execute(
                update(DocumentRow)
                .where(DocumentRow.id.in_(ids), DocumentRow.worker == self.worker)
                .values(lease_until=None, worker="", status="queued")
            )

    def _finished(self, task: asyncio.Task[None]) -> None:
        for doc_id, t in list(self.active.items()):
            if t is task:
                del self.active[doc_id]
                self.progress.pop(doc_id, None)
        self.wake.set()

    async def _claiming(self) -> None:
        while True:
            try:
                free = self.slots - len(self.active)
                if free > 0:
                    for doc_id in await asyncio.to_thread(self._claim, free):
                        task = asyncio.create_task(self._indexing(doc_id), name=f"kb-{doc_id}")
                        self.active[doc_id] = task
                        task.add_done_callback(self._finished)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("claiming documents to index failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    def _claim(self, free: int) -> list[str]:
        now = utcnow()
        claimable = or_(
            DocumentRow.status == "queued",
            (DocumentRow.status == "indexing")
            & or_(DocumentRow.lease_until.is_(None), DocumentRow.lease_until < now),
        )
        claimed = []
        with self.platform.db.transaction() as s:
            for doc_id in s.scalars(
                select(DocumentRow.id)
                .where(claimable, DocumentRow.id.not_in(list(self.active) or [""]))
                .order_by(DocumentRow.updated_at)
                .limit(free)
            ).all():
                moved = s.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id == doc_id, claimable)
                    .values(status="indexing", worker=self.worker, lease_until=now + self.lease)
                )
                if moved.rowcount:  # type: ignore[attr-defined]  # a CursorResult
                    claimed.append(doc_id)
            if claimed:
                s.execute(
                    update(IngestionRow)
                    .where(
                        IngestionRow.status == "queued",
                        IngestionRow.id.in_(
                            select(DocumentRow.ingestion_id).where(DocumentRow.id.in_(claimed))
                        ),
                    )
                    .values(status="running")
                )
        return claimed

    # One document --------------------------------------------------------------------

    async def _indexing(self, doc_id: str) -> None:
        try:
            await self._index(doc_id)
        except Stopped:
            pass
        except asyncio.CancelledError:
            raise
        except ShipyardError as exc:
            await asyncio.to_thread(self._fail, doc_id, exc.detail)
        except Exception as exc:  # noqa: BLE001 - a bug fails its document, not the worker
            log.exception("indexing document %s failed", doc_id)
            await asyncio.to_thread(self._fail, doc_id, f"internal error ({type(exc).__name__})")

    def _load(self, doc_id: str) -> Job:
        with self.platform.db.transaction() as s:
            doc = s.get(DocumentRow, doc_id)
            if doc is None or doc.worker != self.worker or doc.status != "indexing":
                raise Stopped
            kb = s.get(KnowledgeBaseRow, doc.kb_id)
            job = s.get(IngestionRow, doc.ingestion_id) if doc.ingestion_id else None
            if kb is None:
                raise Stopped
            who = job.actor if job is not None else {}
            actor = still_valid(s, who, kb.workspace_id, self.platform.grants)
            s.expunge_all()
            return Job(doc, kb, actor)

    def tokens(self, workspace_id: str, route: str) -> Tokens:
        """The embedding model's tokenizer where the route runs a local model here, else
        word counts (`chunking.WordTokens`)."""
        gateway = self.platform.services.get("gateway")
        path = None
        spec = gateway.snapshot.route(workspace_id, route) if gateway is not None else None
        if spec is not None:
            for dep in spec.deployments:
                if dep.provider.kind == "sentence_transformers":
                    path = str(dep.provider.options.get("model_path") or "") or None
                    break
        key = path or ""
        found = self._tokens.get(key)
        if found is None:
            found = self._tokens[key] = chunking.tokens_for(path)
        return found

    async def _index(self, doc_id: str) -> None:
        job = await asyncio.to_thread(self._load, doc_id)
        if isinstance(job.actor, str):
            raise _Failed(job.actor)
        doc, kb, actor = job.doc, job.kb, job.actor
        tokens = await asyncio.to_thread(self.tokens, kb.workspace_id, kb.embedding_route)
        config = ChunkingIn.model_validate(kb.chunking)
        pieces = await asyncio.to_thread(chunking.split, doc.text, config, tokens)
        progress = self.progress[doc_id] = Progress(chunks=len(pieces))
        gateway = self.platform.services["gateway"]
        vectors: list[list[float]] = []
        for start in range(0, len(pieces), EMBED_BATCH):
            texts = [p.text for p in pieces[start : start + EMBED_BATCH]]
            try:
                got = await gateway.embed(texts, model=kb.embedding_route, actor=actor)
            except ShipyardError as exc:
                raise _Failed(
                    f"embedding through '{kb.embedding_route}' failed: {exc.detail}"
                ) from None
            vectors.extend(got.vectors)
            progress.embedded += len(texts)
            await asyncio.to_thread(self._renew, doc_id)
        matrix = as_matrix(vectors) if vectors else np.zeros((0, max(kb.dimensions, 1)), np.float32)
        old, new = await asyncio.to_thread(self._write, doc, pieces, matrix)
        tags = [tags_of(doc.name, p.metadata | doc.metadata_) for p in pieces]
        await asyncio.to_thread(self._update_index, kb.id, old, new, matrix, tags)

    def _update_index(
        self,
        kb_id: str,
        old: list[int],
        new: list[int],
        matrix: np.ndarray,
        tags: list[dict[str, Any]],
    ) -> None:
        self.index.remove(kb_id, old)
        self.index.add(kb_id, new, matrix, tags)

    def _renew(self, doc_id: str) -> None:
        with self.platform.db.transaction() as s:
            moved = s.execute(
                update(DocumentRow)
                .where(
                    DocumentRow.id == doc_id,
                    DocumentRow.worker == self.worker,
                    DocumentRow.status == "indexing",
                )
                .values(lease_until=utcnow() + self.lease)
            )
            if not moved.rowcount:  # type: ignore[attr-defined]  # a CursorResult
                raise Stopped

    def _write(
        self, claimed: DocumentRow, pieces: list[Piece], matrix: np.ndarray
    ) -> tuple[list[int], list[int]]:
        """The document's chunks replaced in one transaction: (old ids, new ids)."""
        with self.platform.db.transaction() as s:
            doc = s.get(DocumentRow, claimed.id)
            if (
                doc is None
                or doc.worker != self.worker
                or doc.status != "indexing"
                or doc.content_hash != claimed.content_hash
            ):
                raise Stopped
            kb = s.get(KnowledgeBaseRow, doc.kb_id)
            if kb is None:
                raise Stopped
            dims = int(matrix.shape[1]) if len(pieces) else kb.dimensions
            if len(pieces) and kb.dimensions and dims != kb.dimensions:
                raise _Failed(
                    f"the route '{kb.embedding_route}' answered {dims}-dimensional vectors; "
                    f"this knowledge base holds {kb.dimensions}-dimensional ones"
                )
            if len(pieces) and not kb.dimensions:
                kb.dimensions = dims
            old = list(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id == doc.id)))
            if old:
                s.execute(delete(ChunkRow).where(ChunkRow.document_id == doc.id))
            rows = [
                ChunkRow(
                    kb_id=doc.kb_id,
                    document_id=doc.id,
                    position=n,
                    text=p.text,
                    tokens=p.tokens,
                    start=p.start,
                    end=p.end,
                    metadata_=tags_of(doc.name, p.metadata | doc.metadata_),
                    vector=matrix[n].astype("<f4").tobytes(),
                )
                for n, p in enumerate(pieces)
            ]
            s.add_all(rows)
            s.flush()
            now = utcnow()
            doc.status, doc.error, doc.worker, doc.lease_until = "indexed", "", "", None
            doc.chunk_count, doc.indexed_at = len(rows), now
            self._settle(s, doc.ingestion_id)
            return old, [r.id for r in rows]

    def _fail(self, doc_id: str, error: str) -> None:
        with self.platform.db.transaction() as s:
            doc = s.get(DocumentRow, doc_id)
            if doc is None or doc.worker != self.worker or doc.status != "indexing":
                return
            doc.status, doc.error = "failed", f"{doc.name}: {error}"[:2000]
            doc.worker, doc.lease_until = "", None
            self._settle(s, doc.ingestion_id)

    @staticmethod
    def _settle(s: Any, ingestion_id: str | None) -> None:
        """An ingestion whose documents all finished is done (or failed, if any did)."""
        if ingestion_id is None:
            return
        s.flush()
        left = s.scalar(
            select(func.count()).where(
                DocumentRow.ingestion_id == ingestion_id,
                DocumentRow.status.in_(("queued", "indexing")),
            )
        )
        if left:
            return
        failed = s.scalar(
            select(func.count()).where(
                DocumentRow.ingestion_id == ingestion_id, DocumentRow.status == "failed"
            )
        )
        s.execute(
            update(IngestionRow)
            .where(IngestionRow.id == ingestion_id, IngestionRow.status.in_(("queued", "running")))
            .values(status="failed" if failed else "done", finished_at=utcnow())
        )


class _Failed(ShipyardError):
    """This document cannot be indexed (the reason is kept on it)."""
