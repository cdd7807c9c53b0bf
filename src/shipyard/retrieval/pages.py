"""Knowledge bases in the UI, under /kb: the list with a form to create one; per
knowledge base its documents with their indexing status (refreshed while any is
queued or indexing), an upload form, a search playground showing each hit's fused score
and both ranks; the source table's sync status (refreshed while a sync runs) with a
button to sync now; and a chunk viewer per document. Changes go through the API's functions
(the same checks and audit); a refusal is a message on the page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.plugins import RERANKERS
from shipyard.retrieval.api import knowledge_bases as api
from shipyard.retrieval.api import sources
from shipyard.retrieval.kb import Incoming
from shipyard.retrieval.schemas import KnowledgeBaseIn, SearchIn, SourcePublic
from shipyard.store import utcnow
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/kb")


def _list_page(ctx: Ctx, *, error: str | None = None, message: str | None = None) -> Response:
    status = 400 if error else 200
    return render(
        ctx, "kb_list.html", "kb", status, kbs=api.list_kbs(ctx), error=error, message=message
    )


def _kb_page(
    ctx: Ctx,
    name: str,
    *,
    error: str | None = None,
    message: str | None = None,
    search: dict[str, Any] | None = None,
    hits: list[Any] | None = None,
) -> Response:
    kb = api.get_kb(name, ctx)
    docs = api.list_documents(name, ctx, None)
    active = any(d.status in ("queued", "indexing") for d in docs)
    return render(
        ctx, "kb_detail.html", "kb", 400 if error else 200, kb=kb, docs=docs, active=active,
        error=error, message=message, search=search or {"mode": "hybrid", "k": 5}, hits=hits,
        rerankers=sorted(ctx.platform.plugins.names(RERANKERS)), **_source(ctx, name),
    )  # fmt: skip


def _source(ctx: Ctx, name: str) -> dict[str, Any]:
    """The source's status, and whether a sync is due (the page polls until it ran)."""
    try:
        found: SourcePublic | None = sources.get_source(name, ctx)
    except NotFound:
        found = None
    return {"source": found, "due": found is not None and found.next_run_at <= utcnow()}


@router.get("", name="ui.kb_list")
def kb_list(ctx: Ctx = Authorized("kb:read")) -> Response:
    return _list_page(ctx)


@router.post("", name="ui.kb_create")
async def kb_create(
    name: str = Form(max_length=200),
    description: str = Form("", max_length=2000),
    strategy: str = Form("recursive", max_length=16),
    size: str = Form("200", max_length=8),
    overlap: str = Form("20", max_length=8),
    ctx: Ctx = Authorized("kb:write"),
) -> Response:
    def work() -> Response:
        try:
            body = KnowledgeBaseIn.model_validate(
                {
                    "name": name.strip(),
                    "description": description,
                    "chunking": {"strategy": strategy, "size": size, "overlap": overlap},
                }
            )
        except ValidationError as exc:
            raise invalid(exc) from None
        api.create(body, ctx)
        return _list_page(ctx, message=f"Knowledge base {body.name} created.")

    return await _attempt(ctx, work, lambda error: _list_page(ctx, error=error))


async def _attempt(ctx: Ctx, work: Any, on_error: Any) -> Response:
    try:
        response: Response = await run_in_threadpool(work)
        return response
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        refused: Response = await run_in_threadpool(on_error, detail)
        return refused


@router.get("/{name}", name="ui.kb_detail")
def kb_detail(name: str, ctx: Ctx = Authorized("kb:read")) -> Response:
    return _kb_page(ctx, name)


@router.get("/{name}/documents", name="ui.kb_documents")
def kb_documents(name: str, ctx: Ctx = Authorized("kb:read")) -> Response:
    """The documents table alone (what the page polls while indexing)."""
    docs = api.list_documents(name, ctx, None)
    active = any(d.status in ("queued", "indexing") for d in docs)
    kb = api.get_kb(name, ctx)
    return render(ctx, "kb_documents.html", "kb", kb=kb, docs=docs, active=active)


@router.get("/{name}/source", name="ui.kb_source")
def kb_source(name: str, ctx: Ctx = Authorized("kb:read")) -> Response:
    """The source table's status alone (what the page polls while a sync runs)."""
    kb = api.get_kb(name, ctx)
    return render(ctx, "kb_source.html", "kb", kb=kb, **_source(ctx, name))


@router.post("/{name}/sync", name="ui.kb_sync")
async def kb_sync(name: str, ctx: Ctx = Authorized("kb:write")) -> Response:
    def work() -> Response:
        sources.sync_now(name, ctx)
        return _kb_page(ctx, name, message="Sync asked for: it runs now.")

    return await _attempt(ctx, work, lambda error: _kb_page(ctx, name, error=error))


@router.post("/{name}/upload", name="ui.kb_upload")
async def kb_upload(
    name: str, file: UploadFile = File(), ctx: Ctx = Authorized("kb:write")
) -> Response:
    limit = ctx.platform.settings.kb_upload_max_bytes
    data = await file.read(limit + 1)
    filename = file.filename or ""

    def work() -> Response:
        if len(data) > limit:
            raise PayloadTooLarge(f"{filename}: the file exceeds {limit} bytes")
        added = api._add(ctx, name, [Incoming(filename, data)])
        said = (
            f"{filename}: unchanged." if not added.queued else f"{filename}: queued for indexing."
        )
        return _kb_page(ctx, name, message=said)

    return await _attempt(ctx, work, lambda error: _kb_page(ctx, name, error=error))


@router.post("/{name}/search", name="ui.kb_search")
async def kb_search(
    name: str,
    query: str = Form(max_length=8000),
    mode: str = Form("hybrid", max_length=16),
    k: str = Form("5", max_length=4),
    rerank: str = Form("", max_length=64),
    ctx: Ctx = Authorized("kb:search"),
) -> Response:
    form = {"query": query, "mode": mode, "k": k, "rerank": rerank}
    try:
        body = SearchIn.model_validate(
            {"query": query, "mode": mode, "k": k, "rerank": rerank or None}
        )
        found = await api.search(name, body, ctx)
    except ValidationError as exc:
        error = invalid(exc).detail
        return await run_in_threadpool(lambda: _kb_page(ctx, name, error=error, search=form))
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        return await run_in_threadpool(lambda: _kb_page(ctx, name, error=detail, search=form))
    return await run_in_threadpool(lambda: _kb_page(ctx, name, search=form, hits=found.hits))


@router.post("/{name}/documents/{document}/delete", name="ui.kb_delete_document")
async def kb_delete_document(
    name: str, document: str, ctx: Ctx = Authorized("kb:write")
) -> Response:
    def work() -> Response:
        api.delete_document(name, document, ctx)
        return _kb_page(ctx, name, message=f"{document}: deleted with its chunks.")

    return await _attempt(ctx, work, lambda error: _kb_page(ctx, name, error=error))


@router.get("/{name}/chunks", name="ui.kb_chunks")
def kb_chunks(
    name: str, document: str, cursor: int = 0, ctx: Ctx = Authorized("kb:read")
) -> Response:
    if len(document) > 255:
        raise InvalidInput("document: at most 255 characters", param="document")
    kb = api.get_kb(name, ctx)
    found = api.list_chunks(name, ctx, document, max(0, min(cursor, 2**62)), 100)
    doc = api.get_document(name, document, ctx)
    return render(ctx, "kb_chunks.html", "kb", kb=kb, doc=doc, chunks=found)
