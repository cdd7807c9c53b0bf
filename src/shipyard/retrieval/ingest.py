"""The local worker that indexes documents: chunk, embed through the gateway (as the
actor who added them, governed and recorded like any call), write.

A document is claimed with a lease (a compare-and-set on its status and lease), renewed
between embedding calls; a document whose worker stopped or was killed is claimed again
once its lease passes. Its chunks and vectors are written in one transaction that
replaces its old ones, and only while this worker still holds it with the same content
(a newer upload or a cancel in between wins): a document is indexed whole or not at all.
The vector index is told after the commit (see `index`).

A worker slot takes up to `GROUP` queued documents of one knowledge base at once and
embeds the chunks of those one actor added together, in calls of `EMBED_BATCH` texts:
many small documents (a synced table's rows) cost few calls, not one each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

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
GROUP = 32  # documents of one knowledge base a worker slot takes at once
T = TypeVar("T")


class Stopped(Exception):
    """The document was cancelled, replaced, removed, or passed to another worker."""


@dataclass
class Job:
    doc: DocumentRow
    kb: KnowledgeBaseRow
    actor: Actor | str


@dataclass
class Prepared:
    """A claimed document, chunked, waiting for its vectors."""

    doc: DocumentRow
    kb: KnowledgeBaseRow
    actor: Actor
    pieces: list[Piece]


@dataclass
class Progress:
    chunks: int = 0
    embedded: int = 0
    errors: list[str] = field(default_factory=list)


def tags_of(doc_name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {**metadata, "document": doc_name}


def _empty(kb: KnowledgeBaseRow) -> np.ndarray:
    return np.zeros((0, max(kb.dimensions, 1)), np.float32)


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
        self._lost: set[str] = set()  # documents whose lease passed to another worker
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
                self._lost.discard(doc_id)
        self.wake.set()

    async def _claiming(self) -> None:
        while True:
            try:
                free = self.slots - len(set(self.active.values()))
                if free > 0:
                    for group in await asyncio.to_thread(self._claim, free):
                        task = asyncio.create_task(self._indexing(group), name=f"kb-{group[0]}")
                        for doc_id in group:
                            self.active[doc_id] = task
                        task.add_done_callback(self._finished)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("claiming documents to index failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    def _claim(self, free: int) -> list[list[str]]:
        """Up to `free` groups of up to `GROUP` documents, a group's all of one knowledge
        base (their chunks are embedded together: many small documents, such as a synced
        table's rows, in few calls)."""
        now = utcnow()
        claimable = or_(
            DocumentRow.status == "queued",
            (DocumentRow.status == "indexing")
            & or_(DocumentRow.lease_until.is_(None), DocumentRow.lease_until < now),
        )
        groups: dict[str, list[str]] = {}
        claimed = []
        with self.platform.db.transaction() as s:
            for doc_id, kb_id in s.execute(
                select(DocumentRow.id, DocumentRow.kb_id)
                .where(claimable, DocumentRow.id.not_in(list(self.active) or [""]))
                .order_by(DocumentRow.updated_at)
                .limit(free * GROUP)
            ).all():
                group = groups.get(kb_id)
                if group is None:
                    if len(groups) >= free:
                        continue
                    group = groups[kb_id] = []
                if len(group) >= GROUP:
                    continue
                moved = s.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id == doc_id, claimable)
                    .values(status="indexing", worker=self.worker, lease_until=now + self.lease)
                )
                if moved.rowcount:  # type: ignore[attr-defined]  # a CursorResult
                    group.append(doc_id)
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
        return [g for g in groups.values() if g]

    # A group of documents ------------------------------------------------------------

    async def _indexing(self, doc_ids: list[str]) -> None:
        """Each document chunked, the chunks of those added by one actor embedded
        together, each document then written on its own (a failure fails its document;
        one of the embedding call fails the documents it was for)."""
        ready: dict[str, list[Prepared]] = {}
        for doc_id in doc_ids:
            got = await self._guarded(doc_id, self._prepare(doc_id))
            if got is not None:
                ready.setdefault(got.actor.ref, []).append(got)
        for members in ready.values():
            try:
                matrix = await self._embed(members)
            except asyncio.CancelledError:
                raise
            except _Failed as exc:
                for m in members:
                    await asyncio.to_thread(self._fail, m.doc.id, exc.detail)
                continue
            at, items = 0, []
            held = self._held(members)
            for m in members:
                part = matrix[at : at + len(m.pieces)]
                at += len(m.pieces)
                if m.doc.id in held:
                    items.append((m, part))
            await self._store_many(items)

    async def _guarded(self, doc_id: str, work: Awaitable[T]) -> T | None:
        """`work` for one document; what goes wrong fails it (a stop leaves it)."""
        try:
            return await work
        except Stopped:
            return None
        except asyncio.CancelledError:
            raise
        except ShipyardError as exc:
            await asyncio.to_thread(self._fail, doc_id, exc.detail)
        except Exception as exc:  # noqa: BLE001 - a bug fails its document, not the worker
            log.exception("indexing document %s failed", doc_id)
            await asyncio.to_thread(self._fail, doc_id, f"internal error ({type(exc).__name__})")
        return None

    def _held(self, members: list[Prepared]) -> set[str]:
        return {m.doc.id for m in members if m.doc.id not in self._lost}

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

    async def _prepare(self, doc_id: str) -> Prepared:
        job = await asyncio.to_thread(self._load, doc_id)
        if isinstance(job.actor, str):
            raise _Failed(job.actor)
        doc, kb = job.doc, job.kb
        tokens = await asyncio.to_thread(self.tokens, kb.workspace_id, kb.embedding_route)
        config = ChunkingIn.model_validate(kb.chunking)
        pieces = await asyncio.to_thread(chunking.split, doc.text, config, tokens)
        self.progress[doc_id] = Progress(chunks=len(pieces))
        return Prepared(doc, kb, job.actor, pieces)

    async def _embed(self, members: list[Prepared]) -> np.ndarray:
        """The members' chunks embedded in calls of `EMBED_BATCH` texts (their leases
        renewed after each; one lost is left out of the rest). The calls take the texts
        longest first across the whole group, so a call's texts pad to about the same
        length (a model's batch costs as much as its longest text); the vectors come back
        in the chunks' order."""
        kb, actor = members[0].kb, members[0].actor
        texts = [p.text for m in members for p in m.pieces]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        gateway = self.platform.services["gateway"]
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = [texts[i] for i in order[start : start + EMBED_BATCH]]
            try:
                got = await gateway.embed(batch, model=kb.embedding_route, actor=actor)
            except ShipyardError as exc:
                raise _Failed(
                    f"embedding through '{kb.embedding_route}' failed: {exc.detail}"
                ) from None
            vectors.extend(got.vectors)
            held = self._held(members)
            self._lost |= held - await asyncio.to_thread(self._renew, held)
        if not vectors:
            return np.zeros((0, max(kb.dimensions, 1)), np.float32)
        longest_first = as_matrix(vectors)
        matrix = np.empty_like(longest_first)
        matrix[order] = longest_first
        return matrix

    async def _store_many(
        self, items: list[tuple[Prepared, np.ndarray]], *, alone: bool = False
    ) -> None:
        """The group written in one transaction, then the index told; should that
        transaction fail, each document is written on its own (one bad document must
        not fail the others)."""
        items = [(m, part if len(m.pieces) else _empty(m.kb)) for m, part in items]
        try:
            done, failed = await asyncio.to_thread(self._write_many, items)
        except asyncio.CancelledError:
            raise
        except Exception:
            if alone:
                raise  # the document's own failure (see `_guarded`)
            log.warning("writing %d documents together failed; one by one", len(items))
            for item in items:
                await self._guarded(item[0].doc.id, self._store_many([item], alone=True))
            return
        for doc_id, error in failed:
            await asyncio.to_thread(self._fail, doc_id, error)
        if done:
            await asyncio.to_thread(self._update_many, done)

    def _update_many(self, done: list[tuple[Prepared, np.ndarray, list[int], list[int]]]) -> None:
        """Tell the index (after the commit): the old chunks out, the new ones in."""
        kb_id = done[0][0].kb.id
        old = [i for _, _, gone, _ in done for i in gone]
        written = [(m, matrix, new) for m, matrix, _, new in done if new]
        tags = [
            tags_of(m.doc.name, p.metadata | m.doc.metadata_)
            for m, _, _ in written
            for p in m.pieces
        ]
        self._update_index(
            kb_id,
            old,
            [i for _, _, new in written for i in new],
            np.vstack([matrix for _, matrix, _ in written]) if written else _empty(done[0][0].kb),
            tags,
        )

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

    def _renew(self, doc_ids: set[str]) -> set[str]:
        """Renew the documents' leases; those this worker still holds."""
        if not doc_ids:
            return set()
        with self.platform.db.transaction() as s:
            s.execute(
                update(DocumentRow)
                .where(
                    DocumentRow.id.in_(doc_ids),
                    DocumentRow.worker == self.worker,
                    DocumentRow.status == "indexing",
                )
                .values(lease_until=utcnow() + self.lease)
            )
            return set(
                s.scalars(
                    select(DocumentRow.id).where(
                        DocumentRow.id.in_(doc_ids),
                        DocumentRow.worker == self.worker,
                        DocumentRow.status == "indexing",
                    )
                )
            )

    def _write_many(
        self, items: list[tuple[Prepared, np.ndarray]]
    ) -> tuple[list[tuple[Prepared, np.ndarray, list[int], list[int]]], list[tuple[str, str]]]:
        """The documents' chunks replaced in one transaction: (written with their old and
        new chunk ids, failed with why); one no longer held is left out."""
        done, failed = [], []
        with self.platform.db.transaction() as s:
            ingestions = set()
            for m, matrix in items:
                try:
                    old, new = self._replace(s, m.doc, m.pieces, matrix)
                except Stopped:
                    continue
                except _Failed as exc:
                    failed.append((m.doc.id, exc.detail))
                    continue
                done.append((m, matrix, old, new))
                ingestions.add(m.doc.ingestion_id)
            for ingestion_id in ingestions:
                self._settle(s, ingestion_id)
        return done, failed

    def _replace(
        self, s: Any, claimed: DocumentRow, pieces: list[Piece], matrix: np.ndarray
    ) -> tuple[list[int], list[int]]:
        """Within `s`: the document's old chunks deleted, its new ones inserted, it marked
        indexed; only while this worker holds it with the same content."""
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
        doc.status, doc.error, doc.worker, doc.lease_until = "indexed", "", "", None
        doc.chunk_count, doc.indexed_at = len(rows), utcnow()
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
