"""Knowledge bases and their documents, in one transaction each (the caller's session).

Adding documents parses every one of them first (a file that cannot be read is refused
naming it, and nothing is written), then, per document: a new name is queued; a name
whose content hash is unchanged is skipped; a changed one is queued again, and its old
chunks stay searchable until its new ones replace them (in one transaction, see
`ingest`). The queued documents form one ingestion."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.identity.actor import Actor
from shipyard.identity.stored import actor_json
from shipyard.retrieval import parsing
from shipyard.retrieval.tables import ChunkRow, DocumentRow, IngestionRow, KnowledgeBaseRow
from shipyard.store import new_id, utcnow

ACTIVE = ("queued", "indexing")


@dataclass(frozen=True)
class Incoming:
    name: str
    data: bytes
    format: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    file_id: str | None = None  # a /v1/files upload


@dataclass(frozen=True)
class Parsed:
    name: str
    format: str
    text: str
    size: int
    content_hash: str
    metadata: dict[str, Any]
    file_id: str | None = None


@dataclass
class Added:
    ingestion: IngestionRow | None
    queued: list[str]
    unchanged: list[str]


def get(s: Session, workspace_id: str, name: str) -> KnowledgeBaseRow:
    row = s.scalar(
        select(KnowledgeBaseRow).where(
            KnowledgeBaseRow.workspace_id == workspace_id, KnowledgeBaseRow.name == name
        )
    )
    if row is None:
        raise NotFound(f"knowledge base '{name}' not found")
    return row


def listing(s: Session, workspace_id: str) -> list[KnowledgeBaseRow]:
    return list(
        s.scalars(
            select(KnowledgeBaseRow)
            .where(KnowledgeBaseRow.workspace_id == workspace_id)
            .order_by(KnowledgeBaseRow.name)
        )
    )


def counts(s: Session, kb_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """kb id -> (documents, chunks), in two queries whatever the number of bases."""
    if not kb_ids:
        return {}
    docs = dict(
        s.execute(
            select(DocumentRow.kb_id, func.count())
            .where(DocumentRow.kb_id.in_(kb_ids))
            .group_by(DocumentRow.kb_id)
        ).all()
    )
    chunks = dict(
        s.execute(
            select(ChunkRow.kb_id, func.count())
            .where(ChunkRow.kb_id.in_(kb_ids))
            .group_by(ChunkRow.kb_id)
        ).all()
    )
    return {i: (int(docs.get(i, 0)), int(chunks.get(i, 0))) for i in kb_ids}


def create(
    s: Session,
    *,
    workspace_id: str,
    name: str,
    description: str,
    embedding_route: str,
    chunking: dict[str, Any],
    author: str,
) -> KnowledgeBaseRow:
    taken = s.scalar(
        select(KnowledgeBaseRow.id).where(
            KnowledgeBaseRow.workspace_id == workspace_id, KnowledgeBaseRow.name == name
        )
    )
    if taken is not None:
        raise Conflict(f"knowledge base '{name}' already exists")
    row = KnowledgeBaseRow(
        id=new_id("kb"),
        workspace_id=workspace_id,
        name=name,
        description=description,
        embedding_route=embedding_route,
        dimensions=0,
        chunking=chunking,
        created_by=author,
    )
    s.add(row)
    s.flush()
    return row


def parse(files: Sequence[Incoming]) -> list[Parsed]:
    """Every file read, or `InvalidInput` naming the first that cannot be (blocking)."""
    out, seen = [], set()
    for f in files:
        name = parsing.checked_name(f.name)
        if name in seen:
            raise InvalidInput(f"{name}: named twice in one request", param="name")
        seen.add(name)
        fmt = parsing.format_of(name, f.format)
        text = parsing.extract(name, f.data, fmt)
        digest = hashlib.sha256(f.data).hexdigest()
        out.append(Parsed(name, fmt, text, len(f.data), digest, dict(f.metadata), f.file_id))
    return out


def add(s: Session, kb: KnowledgeBaseRow, parsed: Sequence[Parsed], actor: Actor) -> Added:
    names = [p.name for p in parsed]
    have = {
        d.name: d
        for d in s.scalars(
            select(DocumentRow).where(DocumentRow.kb_id == kb.id, DocumentRow.name.in_(names))
        )
    }
    queued, unchanged = [], []
    changed = [
        p
        for p in parsed
        if p.name not in have
        or have[p.name].content_hash != p.content_hash
        or have[p.name].metadata_ != p.metadata
        or have[p.name].file_id != p.file_id
        or have[p.name].status in ("failed", "cancelled")
    ]
    unchanged = [p.name for p in parsed if p not in changed]
    if not changed:
        return Added(None, [], unchanged)
    job = IngestionRow(
        id=new_id("ing"),
        kb_id=kb.id,
        status="queued",
        documents=len(changed),
        created_by=actor.ref,
        actor=actor_json(actor),
    )
    s.add(job)
    s.flush()
    now = utcnow()
    for p in changed:
        row = have.get(p.name)
        if row is None:
            row = DocumentRow(id=new_id("doc"), kb_id=kb.id, name=p.name, chunk_count=0)
            s.add(row)
        row.ingestion_id = job.id
        row.file_id = p.file_id
        row.format = p.format
        row.content_hash = p.content_hash
        row.size_bytes = p.size
        row.text = p.text
        row.metadata_ = p.metadata
        row.status, row.error, row.worker, row.lease_until = "queued", "", "", None
        row.updated_at = now
        queued.append(p.name)
    kb.updated_at = now
    s.flush()
    return Added(job, queued, unchanged)


def ingestion_counts(s: Session, ingestion_id: str) -> dict[str, int]:
    return {
        status: int(n)
        for status, n in s.execute(
            select(DocumentRow.status, func.count())
            .where(DocumentRow.ingestion_id == ingestion_id)
            .group_by(DocumentRow.status)
        ).all()
    }


def get_ingestion(s: Session, kb: KnowledgeBaseRow, ingestion_id: str) -> IngestionRow:
    row = s.get(IngestionRow, ingestion_id)
    if row is None or row.kb_id != kb.id:
        raise NotFound(f"ingestion '{ingestion_id}' not found")
    return row


def cancel(s: Session, job: IngestionRow) -> None:
    """Its documents not yet indexed are not indexed (one that is indexing stops at its
    next write)."""
    if job.status in ("done", "cancelled"):
        raise Conflict(f"ingestion '{job.id}' is already {job.status}")
    job.status, job.finished_at = "cancelled", utcnow()
    s.execute(
        update(DocumentRow)
        .where(DocumentRow.ingestion_id == job.id, DocumentRow.status.in_(ACTIVE))
        .values(status="cancelled", error="the ingestion was cancelled", lease_until=None)
    )


def document(s: Session, kb: KnowledgeBaseRow, name: str) -> DocumentRow:
    row = s.scalar(select(DocumentRow).where(DocumentRow.kb_id == kb.id, DocumentRow.name == name))
    if row is None:
        raise NotFound(f"document '{name}' not found in knowledge base '{kb.name}'")
    return row


def chunk_ids(s: Session, document_id: str) -> list[int]:
    return list(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id == document_id)))
