"""Knowledge bases under /api/knowledge-bases (and document uploads under
/api/kb-uploads, whose bodies are files, not JSON). Thin routes over
`shipyard.retrieval.kb` and the service's search."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.http.deps import Authorized, Ctx
from shipyard.retrieval import kb
from shipyard.retrieval.kb import Incoming
from shipyard.retrieval.parsing import FORMATS
from shipyard.retrieval.schemas import (
    NAME,
    AddedPublic,
    ChunkPage,
    ChunkPublic,
    DocumentPublic,
    DocumentsIn,
    IngestionPublic,
    KnowledgeBaseIn,
    KnowledgeBasePublic,
    KnowledgeBaseUpdate,
    SearchIn,
    SearchPublic,
)
from shipyard.retrieval.service import Retrieval
from shipyard.retrieval.tables import ChunkRow, DocumentRow, IngestionRow, KnowledgeBaseRow

router = APIRouter(prefix="/api/knowledge-bases", tags=["retrieval"])
uploads = APIRouter(prefix="/api/kb-uploads", tags=["retrieval"])
KbName = Annotated[str, Path(pattern=NAME)]
DocName = Annotated[str, Path(min_length=1, max_length=255)]


def _service(ctx: Ctx) -> Retrieval:
    found: Retrieval = ctx.platform.services["retrieval"]
    return found


def kb_public(ctx: Ctx, row: KnowledgeBaseRow, counts: tuple[int, int]) -> KnowledgeBasePublic:
    return KnowledgeBasePublic(
        id=row.id,
        name=row.name,
        description=row.description,
        embedding_route=row.embedding_route,
        dimensions=row.dimensions,
        chunking=row.chunking,
        documents=counts[0],
        chunks=counts[1],
        index_engine=_service(ctx).index.engine,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def doc_public(row: DocumentRow) -> DocumentPublic:
    return DocumentPublic(
        id=row.id,
        name=row.name,
        format=row.format,
        size_bytes=row.size_bytes,
        content_hash=row.content_hash,
        status=row.status,
        error=row.error,
        chunk_count=row.chunk_count,
        metadata=row.metadata_ or {},
        ingestion_id=row.ingestion_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        indexed_at=row.indexed_at,
    )


def ingestion_public(row: IngestionRow, counts: dict[str, int]) -> IngestionPublic:
    return IngestionPublic(
        id=row.id,
        status=row.status,
        documents=row.documents,
        counts=counts,
        created_by=row.created_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


@router.post("", status_code=201, name="kb.create")
def create(body: KnowledgeBaseIn, ctx: Ctx = Authorized("kb:write")) -> KnowledgeBasePublic:
    with ctx.tx(target=f"kb:{body.name}") as tx:
        row = kb.create(
            tx.session,
            workspace_id=ctx.workspace_id,
            name=body.name,
            description=body.description,
            embedding_route=body.embedding_route,
            chunking=body.chunking.model_dump(),
            author=ctx.actor.ref,
        )
        return kb_public(ctx, row, (0, 0))


@router.get("", name="kb.list")
def list_kbs(ctx: Ctx = Authorized("kb:read")) -> list[KnowledgeBasePublic]:
    with ctx.tx() as tx:
        rows = kb.listing(tx.session, ctx.workspace_id)
        counts = kb.counts(tx.session, [r.id for r in rows])
        return [kb_public(ctx, r, counts[r.id]) for r in rows]


@router.get("/{name}", name="kb.get")
def get_kb(name: KbName, ctx: Ctx = Authorized("kb:read")) -> KnowledgeBasePublic:
    with ctx.tx() as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        return kb_public(ctx, row, kb.counts(tx.session, [row.id])[row.id])


@router.patch("/{name}", name="kb.update")
def update_kb(
    name: KbName, body: KnowledgeBaseUpdate, ctx: Ctx = Authorized("kb:write")
) -> KnowledgeBasePublic:
    with ctx.tx(target=f"kb:{name}") as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        row.description = body.description
        return kb_public(ctx, row, kb.counts(tx.session, [row.id])[row.id])


@router.delete("/{name}", status_code=204, name="kb.delete")
def delete_kb(name: KbName, ctx: Ctx = Authorized("kb:write")) -> Response:
    """The knowledge base, its documents, chunks and vectors."""
    with ctx.tx(target=f"kb:{name}") as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        kb_id = row.id
        tx.session.delete(row)
    _service(ctx).index.drop(kb_id)
    return Response(status_code=204)


def _add(ctx: Ctx, name: str, files: list[Incoming]) -> AddedPublic:
    parsed = kb.parse(files)
    with ctx.tx(target=f"kb:{name}") as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        added = kb.add(tx.session, row, parsed, ctx.actor)
        tx.detail = f"{len(added.queued)} queued, {len(added.unchanged)} unchanged"
        job = added.ingestion
        out = AddedPublic(
            ingestion=ingestion_public(job, {"queued": len(added.queued)}) if job else None,
            queued=added.queued,
            unchanged=added.unchanged,
        )
    if added.queued:
        _service(ctx).queued()
    return out


@router.post("/{name}/documents", status_code=202, name="kb.add_documents")
async def add_documents(
    name: KbName, body: DocumentsIn, ctx: Ctx = Authorized("kb:write")
) -> AddedPublic:
    """Documents as text; indexed in the background (the reply names the ingestion)."""
    files = [
        Incoming(
            d.name,
            d.text.encode(),
            d.format or ("md" if d.name.endswith(".md") else "txt"),
            d.metadata,
        )
        for d in body.documents
    ]
    return await anyio.to_thread.run_sync(lambda: _add(ctx, name, files))


@uploads.post("/{name}", status_code=202, name="kb.upload")
async def upload(
    request: Request,
    name: KbName,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
    format: Annotated[str | None, Query(max_length=16)] = None,  # noqa: A002 - the API's word
    ctx: Ctx = Authorized("kb:write"),
) -> AddedPublic:
    """The body is the file (txt, md, html, pdf, json, jsonl, csv; by its suffix unless
    `format` says)."""
    if format is not None and format not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", param="format")
    limit = ctx.platform.settings.kb_upload_max_bytes
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"{filename}: the file exceeds {limit} bytes")
    files = [Incoming(filename, bytes(data), format)]
    return await anyio.to_thread.run_sync(lambda: _add(ctx, name, files))


@router.get("/{name}/documents", name="kb.documents")
def list_documents(
    name: KbName,
    ctx: Ctx = Authorized("kb:read"),
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> list[DocumentPublic]:
    with ctx.tx() as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        stmt = select(DocumentRow).where(DocumentRow.kb_id == row.id)
        if status:
            stmt = stmt.where(DocumentRow.status == status)
        return [doc_public(d) for d in tx.session.scalars(stmt.order_by(DocumentRow.name))]


@router.get("/{name}/documents/{document}", name="kb.document")
def get_document(
    name: KbName, document: DocName, ctx: Ctx = Authorized("kb:read")
) -> DocumentPublic:
    with ctx.tx() as tx:
        return doc_public(
            kb.document(tx.session, kb.get(tx.session, ctx.workspace_id, name), document)
        )


@router.delete("/{name}/documents/{document}", status_code=204, name="kb.delete_document")
def delete_document(name: KbName, document: DocName, ctx: Ctx = Authorized("kb:write")) -> Response:
    """The document, its chunks and their vectors."""
    with ctx.tx(target=f"kb:{name}/{document}") as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        doc = kb.document(tx.session, row, document)
        ids = kb.chunk_ids(tx.session, doc.id)
        tx.session.delete(doc)
        kb_id = row.id
    _service(ctx).index.remove(kb_id, ids)
    return Response(status_code=204)


@router.get("/{name}/chunks", name="kb.chunks")
def list_chunks(
    name: KbName,
    ctx: Ctx = Authorized("kb:read"),
    document: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    cursor: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ChunkPage:
    """Chunks in id order (a document's in position order); `next_cursor` pages on."""
    with ctx.tx() as tx:
        row = kb.get(tx.session, ctx.workspace_id, name)
        stmt = (
            select(ChunkRow, DocumentRow.name)
            .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
            .where(ChunkRow.kb_id == row.id, ChunkRow.id > cursor)
        )
        if document is not None:
            stmt = stmt.where(DocumentRow.id == kb.document(tx.session, row, document).id)
        found = tx.session.execute(stmt.order_by(ChunkRow.id).limit(limit + 1)).all()
        more = len(found) > limit
        found = found[:limit]
        return ChunkPage(
            chunks=[
                ChunkPublic(
                    id=c.id,
                    document=doc_name,
                    position=c.position,
                    text=c.text,
                    tokens=c.tokens,
                    start=c.start,
                    end=c.end,
                    metadata=c.metadata_ or {},
                )
                for c, doc_name in found
            ],
            next_cursor=str(found[-1][0].id) if more and found else None,
        )


@router.get("/{name}/ingestions/{ingestion}", name="kb.ingestion")
def get_ingestion(
    name: KbName, ingestion: Annotated[str, Path(max_length=64)], ctx: Ctx = Authorized("kb:read")
) -> IngestionPublic:
    with ctx.tx() as tx:
        job = kb.get_ingestion(tx.session, kb.get(tx.session, ctx.workspace_id, name), ingestion)
        return ingestion_public(job, kb.ingestion_counts(tx.session, job.id))


@router.post("/{name}/ingestions/{ingestion}/cancel", name="kb.cancel_ingestion")
def cancel_ingestion(
    name: KbName, ingestion: Annotated[str, Path(max_length=64)], ctx: Ctx = Authorized("kb:write")
) -> IngestionPublic:
    with ctx.tx(target=f"kb:{name}") as tx:
        job = kb.get_ingestion(tx.session, kb.get(tx.session, ctx.workspace_id, name), ingestion)
        kb.cancel(tx.session, job)
        tx.session.flush()
        out = ingestion_public(job, kb.ingestion_counts(tx.session, job.id))
        cancelled = [d.id for d in tx.session.query(DocumentRow).filter_by(ingestion_id=job.id)]
    _service(ctx).indexer.cancel(cancelled)
    return out


@router.post("/{name}/search", name="kb.search")
async def search(name: KbName, body: SearchIn, ctx: Ctx = Authorized("kb:search")) -> SearchPublic:
    """Hybrid (vector and full text, fused by reciprocal rank), vector or lexical."""

    def load() -> KnowledgeBaseRow:
        with ctx.tx() as tx:
            row = kb.get(tx.session, ctx.workspace_id, name)
            tx.session.expunge(row)
            return row

    row = await anyio.to_thread.run_sync(load)
    hits: list[dict[str, Any]] = await _service(ctx).search(row, body, ctx.actor)
    return SearchPublic.model_validate({"query": body.query, "mode": body.mode, "hits": hits})
