"""OpenAI's Files and Vector Stores API over knowledge bases, so that the official
`openai` SDK manages and searches them unchanged:

    POST/GET /v1/files, GET/DELETE /v1/files/{id}          (a file's bytes, kept until deleted)
    POST/GET /v1/vector_stores, GET/POST/DELETE /v1/vector_stores/{id}
    POST/GET /v1/vector_stores/{id}/files, GET/DELETE .../files/{file_id}
    POST .../file_batches, GET .../file_batches/{id}, POST .../file_batches/{id}/cancel
    POST /v1/vector_stores/{id}/search

A vector store is a knowledge base (its id is the knowledge base's; a name that is not a
slug is made one), a vector-store file is a document (named by its file's filename), a
file batch is an ingestion. Authenticated by API key (`Authorization: Bearer`), with the
same permissions as `/api/knowledge-bases`; errors in OpenAI's error shape. A Starlette
app mounted before FastAPI (the gateway's `/v1/` is the longer prefix's fallback)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import Field, ValidationError
from sqlalchemy import func, select
from starlette.requests import Request

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from shipyard.http.openai_app import OpenAIStyleApp, RouteRow, page, parsed
from shipyard.identity.actor import Actor
from shipyard.inputs import Strict, invalid
from shipyard.retrieval import kb
from shipyard.retrieval.chunking import ChunkingIn
from shipyard.retrieval.kb import Incoming
from shipyard.retrieval.schemas import NAME, SearchIn
from shipyard.retrieval.tables import DocumentRow, FileRow, IngestionRow, KnowledgeBaseRow
from shipyard.store import new_id

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.retrieval.service import Retrieval

STATUS = {"queued": "in_progress", "indexing": "in_progress", "indexed": "completed"}
BATCH_STATUS = {"queued": "in_progress", "running": "in_progress", "done": "completed"}


class StoreIn(Strict):
    name: str | None = Field(default=None, max_length=256)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    chunking_strategy: dict[str, Any] | None = None
    expires_after: dict[str, Any] | None = None


class StoreUpdate(Strict):
    name: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    expires_after: dict[str, Any] | None = None


class StoreFileIn(Strict):
    file_id: str = Field(max_length=64)
    attributes: dict[str, str | int | float | bool] | None = Field(default=None, max_length=16)
    chunking_strategy: dict[str, Any] | None = None


class BatchIn(Strict):
    file_ids: list[str] = Field(min_length=1, max_length=500)
    attributes: dict[str, str | int | float | bool] | None = Field(default=None, max_length=16)
    chunking_strategy: dict[str, Any] | None = None


class StoreSearchIn(Strict):
    query: str | list[str]
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: dict[str, Any] | None = None
    rewrite_query: bool = False


def _chunking(strategy: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's `{"type": "static", "static": {"max_chunk_size_tokens", "chunk_overlap_tokens"}}`
    as fixed-size chunks; `auto` (or none) as the default recursive chunks."""
    if not strategy or strategy.get("type") == "auto":
        return ChunkingIn().model_dump()
    if strategy.get("type") != "static" or not isinstance(strategy.get("static"), dict):
        raise InvalidInput(
            "chunking_strategy: type must be auto or static", param="chunking_strategy"
        )
    static = strategy["static"]
    try:
        return ChunkingIn(
            strategy="fixed",
            size=static.get("max_chunk_size_tokens", 800),
            overlap=static.get("chunk_overlap_tokens", 400),
        ).model_dump()
    except ValidationError as exc:
        raise invalid(exc, "chunking_strategy") from None


def _slug(name: str | None, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", (name or "").strip()).strip("-._")[:100] or "store"
    if not re.match(NAME, base):
        base = f"vs-{base}"[:100]
    out, n = base, 2
    while out in taken:
        out, n = f"{base}-{n}", n + 1
    return out


def _where(filters: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's comparison filters (`eq`, `in`) joined by `and`, as a metadata filter."""
    if not filters:
        return {}
    kind = filters.get("type")
    if kind == "and":
        out: dict[str, Any] = {}
        for part in filters.get("filters") or []:
            if not isinstance(part, dict):
                raise InvalidInput("filters: each of 'filters' is an object", param="filters")
            out.update(_where(part))
        return out
    if kind in ("eq", "in") and isinstance(filters.get("key"), str):
        value = filters.get("value")
        if kind == "in" and not isinstance(value, list):
            raise InvalidInput("filters: 'in' takes a list value", param="filters")
        if not isinstance(value, str | int | float | bool | list):
            raise InvalidInput("filters: a value is a string, number or boolean", param="filters")
        return {filters["key"]: value}
    raise InvalidInput("filters: supported are eq, in and and", param="filters")


class VectorStoresApp(OpenAIStyleApp):
    face = "vector_stores"

    def routes(self) -> list[RouteRow]:
        vs, files = "/v1/vector_stores/{vs}", "/v1/vector_stores/{vs}/files"
        batch = "/v1/vector_stores/{vs}/file_batches/{batch}"
        return [
            ("/v1/files", "POST", self.upload_file, "kb:write", "upload files"),
            ("/v1/files", "GET", self.list_files, "kb:read", "list files"),
            ("/v1/files/{file_id}", "GET", self.get_file, "kb:read", "read files"),
            ("/v1/files/{file_id}", "DELETE", self.delete_file, "kb:write", "delete files"),
            ("/v1/vector_stores", "POST", self.create_store, "kb:write", "create vector stores"),
            ("/v1/vector_stores", "GET", self.list_stores, "kb:read", "list vector stores"),
            (vs, "GET", self.get_store, "kb:read", "read vector stores"),
            (vs, "POST", self.update_store, "kb:write", "change vector stores"),
            (vs, "DELETE", self.delete_store, "kb:write", "delete vector stores"),
            (files, "POST", self.attach, "kb:write", "add files"),
            (files, "GET", self.store_files, "kb:read", "list files"),
            (files + "/{file_id}", "GET", self.store_file, "kb:read", "read files"),
            (files + "/{file_id}", "DELETE", self.detach, "kb:write", "remove files"),
            (vs + "/file_batches", "POST", self.create_batch, "kb:write", "add files"),
            (batch, "GET", self.get_batch, "kb:read", "read file batches"),
            (batch + "/cancel", "POST", self.cancel_batch, "kb:write", "cancel file batches"),
            (vs + "/search", "POST", self.search, "kb:search", "search vector stores"),
        ]

    @property
    def service(self) -> Retrieval:
        found: Retrieval = self.platform.services["retrieval"]
        return found

    # files ------------------------------------------------------------------------------

    @staticmethod
    def file_object(row: FileRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "object": "file",
            "bytes": row.size_bytes,
            "created_at": int(row.created_at.timestamp()),
            "filename": row.filename,
            "purpose": row.purpose,
            "status": "processed",
        }

    async def upload_file(self, request: Request, actor: Actor) -> Any:
        limit = self.platform.settings.kb_upload_max_bytes
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise InvalidInput("send the file as multipart/form-data (fields file and purpose)")
        form = await request.form(max_files=1, max_fields=8, max_part_size=limit + 1)
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("'file' is required", param="file")
        if not isinstance(purpose, str) or not purpose or len(purpose) > 32:
            raise InvalidInput("'purpose' is required (e.g. assistants)", param="purpose")
        data = await upload.read(limit + 1)
        filename = upload.filename or ""
        if len(data) > limit:
            raise PayloadTooLarge(f"{filename}: the file exceeds {limit} bytes")

        def store() -> dict[str, Any]:
            from shipyard.retrieval.parsing import checked_name, format_of

            name = checked_name(filename)
            if purpose == "fine-tune":  # checked line by line now, not when a job starts
                from shipyard.training.data import method_of, read

                read(data, method_of(data), name=name)
            else:  # a type Shipyard cannot read is refused now, not when attached
                format_of(name)
            with self.platform.db.transaction() as s:
                row = FileRow(
                    id=new_id("file"), workspace_id=actor.workspace_id, filename=name,
                    purpose=purpose, size_bytes=len(data), data=data, created_by=actor.ref,
                )  # fmt: skip
                s.add(row)
                s.flush()
                self.audit(s, actor, "files.upload", f"file:{row.id}")
                return self.file_object(row)

        return await anyio.to_thread.run_sync(store)

    def _file(self, s: Any, actor: Actor, file_id: str) -> FileRow:
        row = s.get(FileRow, file_id[:64])
        if row is None or row.workspace_id != actor.workspace_id:
            raise NotFound(f"no file with id '{file_id[:64]}'", param="file_id")
        return row  # type: ignore[no-any-return]  # a FileRow

    async def list_files(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                rows = s.scalars(
                    select(FileRow)
                    .where(FileRow.workspace_id == actor.workspace_id)
                    .order_by(FileRow.created_at.desc())
                    .limit(10_000)
                ).all()
                return page([self.file_object(r) for r in rows])

        return await anyio.to_thread.run_sync(work)

    async def get_file(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                return self.file_object(self._file(s, actor, request.path_params["file_id"]))

        return await anyio.to_thread.run_sync(work)

    async def delete_file(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                row = self._file(s, actor, request.path_params["file_id"])
                s.delete(row)
                self.audit(s, actor, "files.delete", f"file:{row.id}")
                return {"id": row.id, "object": "file", "deleted": True}

        return await anyio.to_thread.run_sync(work)

    # vector stores ----------------------------------------------------------------------

    def _store(self, s: Any, actor: Actor, vs: str) -> KnowledgeBaseRow:
        row = s.get(KnowledgeBaseRow, vs[:64])
        if row is None or row.workspace_id != actor.workspace_id:
            raise NotFound(f"no vector store with id '{vs[:64]}'", param="vector_store_id")
        return row  # type: ignore[no-any-return]  # a KnowledgeBaseRow

    def store_object(
        self,
        s: Any,
        row: KnowledgeBaseRow,
        tally: dict[str, tuple[dict[str, int], int]] | None = None,
    ) -> dict[str, Any]:
        if tally is None:
            tally = _tally(s, [row.id])
        counts, usage = tally.get(row.id, (_no_files(), 0))
        return {
            "id": row.id,
            "object": "vector_store",
            "created_at": int(row.created_at.timestamp()),
            "last_active_at": int(row.updated_at.timestamp()),
            "name": row.name,
            "usage_bytes": usage,
            "file_counts": counts,
            "status": "in_progress" if counts["in_progress"] else "completed",
            "expires_after": None,
            "expires_at": None,
            "metadata": {"description": row.description} if row.description else {},
        }

    async def create_store(self, request: Request, actor: Actor) -> Any:
        body: StoreIn = parsed(StoreIn, await self.read(request))
        chunking = _chunking(body.chunking_strategy)

        def work() -> Any:
            with self.platform.db.transaction() as s:
                taken = {k.name for k in kb.listing(s, actor.workspace_id)}
                row = kb.create(
                    s, workspace_id=actor.workspace_id, name=_slug(body.name, taken),
                    description=(body.metadata or {}).get("description", body.name or "")[:2000],
                    embedding_route="all-minilm-l6-v2", chunking=chunking, author=actor.ref,
                )  # fmt: skip
                if body.file_ids:
                    self._attach(s, actor, row, body.file_ids, {})
                self.audit(s, actor, "vector_stores.create", f"kb:{row.name}")
                return self.store_object(s, row)

        out = await anyio.to_thread.run_sync(work)
        self.service.queued()
        return out

    async def list_stores(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                rows = kb.listing(s, actor.workspace_id)
                tally = _tally(s, [r.id for r in rows])
                data = [self.store_object(s, r, tally) for r in rows]
            return page(data)

        return await anyio.to_thread.run_sync(work)

    async def get_store(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                return self.store_object(s, self._store(s, actor, request.path_params["vs"]))

        return await anyio.to_thread.run_sync(work)

    async def update_store(self, request: Request, actor: Actor) -> Any:
        body: StoreUpdate = parsed(StoreUpdate, await self.read(request))

        def work() -> Any:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                if body.metadata and "description" in body.metadata:
                    row.description = body.metadata["description"][:2000]
                self.audit(s, actor, "vector_stores.update", f"kb:{row.name}")
                return self.store_object(s, row)

        return await anyio.to_thread.run_sync(work)

    async def delete_store(self, request: Request, actor: Actor) -> Any:
        def work() -> str:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                s.delete(row)
                self.audit(s, actor, "vector_stores.delete", f"kb:{row.name}")
                return row.id

        kb_id = await anyio.to_thread.run_sync(work)
        self.service.index.drop(kb_id)
        return {"id": kb_id, "object": "vector_store.deleted", "deleted": True}

    # vector store files ----------------------------------------------------------------

    def _attach(
        self,
        s: Any,
        actor: Actor,
        row: KnowledgeBaseRow,
        file_ids: list[str],
        attributes: dict[str, Any],
    ) -> kb.Added:
        files = [self._file(s, actor, f) for f in dict.fromkeys(file_ids)]
        parsed = kb.parse(
            [Incoming(f.filename, f.data, None, dict(attributes), f.id) for f in files]
        )
        return kb.add(s, row, parsed, actor)

    def file_entry(self, row: DocumentRow, vs: str) -> dict[str, Any]:
        status = STATUS.get(row.status, row.status)
        return {
            "id": row.file_id or row.id,
            "object": "vector_store.file",
            "vector_store_id": vs,
            "created_at": int(row.created_at.timestamp()),
            "status": status,
            "usage_bytes": row.size_bytes,
            "last_error": {"code": "server_error", "message": row.error}
            if status == "failed"
            else None,
            "attributes": row.metadata_ or {},
            "chunking_strategy": {"type": "other"},
        }

    def _entry(self, s: Any, row: KnowledgeBaseRow, file_id: str) -> DocumentRow:
        doc = s.scalar(
            select(DocumentRow).where(
                DocumentRow.kb_id == row.id, DocumentRow.file_id == file_id[:64]
            )
        )
        if doc is None:
            raise NotFound(f"no file '{file_id[:64]}' in vector store '{row.id}'", param="file_id")
        return doc  # type: ignore[no-any-return]  # a DocumentRow

    async def attach(self, request: Request, actor: Actor) -> Any:
        body: StoreFileIn = parsed(StoreFileIn, await self.read(request))

        def work() -> Any:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                self._attach(s, actor, row, [body.file_id], body.attributes or {})
                self.audit(s, actor, "vector_stores.files.create", f"kb:{row.name}")
                s.flush()
                return self.file_entry(self._entry(s, row, body.file_id), row.id)

        out = await anyio.to_thread.run_sync(work)
        self.service.queued()
        return out

    async def store_files(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                docs = s.scalars(
                    select(DocumentRow)
                    .where(DocumentRow.kb_id == row.id)
                    .order_by(DocumentRow.created_at)
                ).all()
                data = [self.file_entry(d, row.id) for d in docs]
            return page(data)

        return await anyio.to_thread.run_sync(work)

    async def store_file(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                return self.file_entry(self._entry(s, row, request.path_params["file_id"]), row.id)

        return await anyio.to_thread.run_sync(work)

    async def detach(self, request: Request, actor: Actor) -> Any:
        def work() -> tuple[str, list[int], str]:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                doc = self._entry(s, row, request.path_params["file_id"])
                ids = kb.chunk_ids(s, doc.id)
                s.delete(doc)
                self.audit(s, actor, "vector_stores.files.delete", f"kb:{row.name}/{doc.name}")
                return row.id, ids, doc.file_id or doc.id

        kb_id, ids, file_id = await anyio.to_thread.run_sync(work)
        self.service.index.remove(kb_id, ids)
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    # batches ------------------------------------------------------------------------------

    def batch_object(self, s: Any, job: IngestionRow) -> dict[str, Any]:
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}
        for status, n in kb.ingestion_counts(s, job.id).items():
            key = STATUS.get(status, status)
            counts[key] = counts.get(key, 0) + n
            counts["total"] += n
        return {
            "id": job.id,
            "object": "vector_store.files_batch",
            "vector_store_id": job.kb_id,
            "created_at": int(job.created_at.timestamp()),
            "status": BATCH_STATUS.get(job.status, job.status),
            "file_counts": counts,
        }

    async def create_batch(self, request: Request, actor: Actor) -> Any:
        body: BatchIn = parsed(BatchIn, await self.read(request))

        def work() -> Any:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                added = self._attach(s, actor, row, body.file_ids, body.attributes or {})
                self.audit(s, actor, "vector_stores.file_batches.create", f"kb:{row.name}")
                if added.ingestion is None:  # every file unchanged: a finished, empty batch
                    job = IngestionRow(
                        id=new_id("ing"), kb_id=row.id, status="done", documents=0,
                        created_by=actor.ref, actor={},
                    )  # fmt: skip
                    s.add(job)
                    s.flush()
                    return self.batch_object(s, job)
                return self.batch_object(s, added.ingestion)

        out = await anyio.to_thread.run_sync(work)
        self.service.queued()
        return out

    def _batch(self, s: Any, actor: Actor, request: Request) -> IngestionRow:
        row = self._store(s, actor, request.path_params["vs"])
        try:
            return kb.get_ingestion(s, row, request.path_params["batch"][:64])
        except NotFound:
            raise NotFound(
                f"no file batch '{request.path_params['batch'][:64]}'", param="batch_id"
            ) from None

    async def get_batch(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                return self.batch_object(s, self._batch(s, actor, request))

        return await anyio.to_thread.run_sync(work)

    async def cancel_batch(self, request: Request, actor: Actor) -> Any:
        def work() -> tuple[Any, list[str]]:
            with self.platform.db.transaction() as s:
                job = self._batch(s, actor, request)
                kb.cancel(s, job)
                s.flush()
                ids = list(
                    s.scalars(select(DocumentRow.id).where(DocumentRow.ingestion_id == job.id))
                )
                self.audit(s, actor, "vector_stores.file_batches.cancel", f"ingestion:{job.id}")
                return self.batch_object(s, job), ids

        out, ids = await anyio.to_thread.run_sync(work)
        self.service.indexer.cancel(ids)
        return out

    # search -------------------------------------------------------------------------------

    async def search(self, request: Request, actor: Actor) -> Any:
        body: StoreSearchIn = parsed(StoreSearchIn, await self.read(request))
        query = body.query if isinstance(body.query, str) else " ".join(body.query)
        if not query.strip():
            raise InvalidInput("'query' is empty", param="query")
        where = _where(body.filters)
        try:
            search = SearchIn(query=query[:8000], k=body.max_num_results, where=where)
        except ValidationError as exc:
            raise invalid(exc) from None

        def load() -> tuple[KnowledgeBaseRow, dict[str, str]]:
            with self.platform.db.transaction() as s:
                row = self._store(s, actor, request.path_params["vs"])
                files = dict(
                    s.execute(
                        select(DocumentRow.name, DocumentRow.file_id).where(
                            DocumentRow.kb_id == row.id
                        )
                    ).all()
                )
                s.expunge(row)
                return row, {k: v or k for k, v in files.items()}

        row, files = await anyio.to_thread.run_sync(load)
        if not actor.can("gateway:call"):
            raise PermissionDenied(f"the {actor.role.value} role cannot call the gateway")
        hits = await self.service.search(row, search, actor)
        data = [
            {
                "file_id": files.get(h["document"], h["document"]),
                "filename": h["document"],
                "score": h["score"],
                "attributes": {k: v for k, v in h["metadata"].items() if k != "document"},
                "content": [{"type": "text", "text": h["text"]}],
            }
            for h in hits
        ]
        return {
            "object": "vector_store.search_results.page",
            "search_query": [query] if isinstance(body.query, str) else body.query,
            "data": data,
            "has_more": False,
            "next_page": None,
        }


def mount(platform: Platform) -> VectorStoresApp:
    return VectorStoresApp(platform)


def _no_files() -> dict[str, int]:
    return {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}


def _tally(s: Any, kb_ids: list[str]) -> dict[str, tuple[dict[str, int], int]]:
    """Per store: its files counted by OpenAI's status, and their bytes (one query)."""
    out: dict[str, tuple[dict[str, int], int]] = {}
    if not kb_ids:
        return out
    grouped = s.execute(
        select(
            DocumentRow.kb_id,
            DocumentRow.status,
            func.count(),
            func.coalesce(func.sum(DocumentRow.size_bytes), 0),
        )
        .where(DocumentRow.kb_id.in_(kb_ids))
        .group_by(DocumentRow.kb_id, DocumentRow.status)
    ).all()
    for kb_id, status, n, size in grouped:
        counts, usage = out.setdefault(kb_id, (_no_files(), 0))
        shown = STATUS.get(status, status)
        counts[shown] = counts.get(shown, 0) + int(n)
        counts["total"] += int(n)
        out[kb_id] = (counts, usage + int(size))
    return out
