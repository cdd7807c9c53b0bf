"""Knowledge bases from the SDK.

    client.kb.create("handbook", chunking={"strategy": "markdown", "size": 200})
    added = client.kb.upload("handbook", Path("guide.pdf"))
    client.kb.wait("handbook", added.ingestion.id)
    for hit in client.kb.search("handbook", "how do refunds work?", k=5).hits:
        print(hit.score, hit.document, hit.text[:80])

A knowledge base can follow a table in another database (its rows become documents):

    client.kb.set_source("handbook", kind="postgres", location="postgresql://...",
                         table="articles", text_column="body", updated_column="updated_at",
                         mode="continuous")
    client.kb.sync("handbook")              # now, rather than at the next interval
    print(client.kb.source("handbook").lag_seconds)

With `AsyncClient` every method returns an awaitable (`wait` too)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from shipyard.retrieval.schemas import (
    AddedPublic,
    ChunkPage,
    DocumentPublic,
    IngestionPublic,
    KnowledgeBasePublic,
    SearchPublic,
    SourcePublic,
)
from shipyard.sdk.calls import Call, Upload, _as
from shipyard.sdk.evaluation import _clean, _seg

ACTIVE = ("queued", "running")


class KnowledgeBases:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def _path(self, name: str, rest: str = "") -> str:
        return f"/api/knowledge-bases/{_seg(name)}{rest}"

    def list(self) -> Any:
        """-> list[KnowledgeBasePublic]"""
        return self._run(Call("GET", "/api/knowledge-bases", _as(list[KnowledgeBasePublic])))

    def get(self, name: str) -> Any:
        return self._run(Call("GET", self._path(name), _as(KnowledgeBasePublic)))

    def create(
        self,
        name: str,
        *,
        description: str = "",
        embedding_route: str = "all-minilm-l6-v2",
        chunking: dict[str, Any] | None = None,
    ) -> Any:
        """-> KnowledgeBasePublic; `chunking`: `{"strategy": "recursive" | "markdown" |
        "fixed", "size": tokens, "overlap": tokens}`."""
        body = _clean(
            {
                "name": name,
                "description": description,
                "embedding_route": embedding_route,
                "chunking": chunking,
            }
        )
        return self._run(Call("POST", "/api/knowledge-bases", _as(KnowledgeBasePublic), json=body))

    def delete(self, name: str) -> Any:
        return self._run(Call("DELETE", self._path(name), lambda _: None))

    def add(self, name: str, documents: Sequence[dict[str, Any]]) -> Any:
        """Documents as text (`{"name", "text", "metadata"?, "format"?}`) -> AddedPublic."""
        body = {"documents": list(documents)}
        return self._run(Call("POST", self._path(name, "/documents"), _as(AddedPublic), json=body))

    def upload(
        self,
        name: str,
        path: Path,
        *,
        format: Literal["txt", "md", "html", "pdf", "json", "jsonl", "csv"] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Any:
        """One file (its format from its suffix unless given) -> AddedPublic."""
        body = Upload(path, path.stat().st_size, progress)
        call = Call(
            "POST",
            f"/api/kb-uploads/{_seg(name)}",
            _as(AddedPublic),
            params=_clean({"filename": path.name, "format": format}),
            content=body,
            headers={"content-type": "application/octet-stream"},
        )
        return self._run(call)

    def documents(self, name: str, *, status: str | None = None) -> Any:
        """-> list[DocumentPublic]"""
        params = _clean({"status": status})
        path = self._path(name, "/documents")
        return self._run(Call("GET", path, _as(list[DocumentPublic]), params=params))

    def remove(self, name: str, document: str) -> Any:
        """The document, its chunks and their vectors."""
        return self._run(
            Call("DELETE", self._path(name, f"/documents/{_seg(document)}"), lambda _: None)
        )

    def chunks(
        self, name: str, *, document: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Any:
        """-> ChunkPage"""
        params = _clean({"document": document, "cursor": cursor, "limit": limit})
        return self._run(Call("GET", self._path(name, "/chunks"), _as(ChunkPage), params=params))

    def ingestion(self, name: str, ingestion_id: str) -> Any:
        path = self._path(name, f"/ingestions/{_seg(ingestion_id)}")
        return self._run(Call("GET", path, _as(IngestionPublic)))

    def cancel(self, name: str, ingestion_id: str) -> Any:
        path = self._path(name, f"/ingestions/{_seg(ingestion_id)}/cancel")
        return self._run(Call("POST", path, _as(IngestionPublic)))

    def search(
        self,
        name: str,
        query: str,
        *,
        k: int = 5,
        mode: Literal["hybrid", "vector", "lexical"] = "hybrid",
        where: dict[str, Any] | None = None,
        vector_weight: float | None = None,
        lexical_weight: float | None = None,
        rerank: str | None = None,
    ) -> Any:
        """-> SearchPublic (hits best first); `rerank` names a registered reranker."""
        body = _clean(
            {
                "query": query,
                "k": k,
                "mode": mode,
                "where": where,
                "vector_weight": vector_weight,
                "lexical_weight": lexical_weight,
                "rerank": rerank,
            }
        )
        return self._run(Call("POST", self._path(name, "/search"), _as(SearchPublic), json=body))

    def set_source(
        self,
        name: str,
        *,
        kind: Literal["sqlite", "postgres"],
        location: str,
        table: str,
        text_column: str,
        id_column: str = "id",
        updated_column: str | None = None,
        metadata_columns: Sequence[str] = (),
        mode: Literal["schedule", "continuous"] = "schedule",
        interval_seconds: float | None = None,
        allow_internal: bool = False,
    ) -> Any:
        """Follow a table (a SQLite file's path or a postgresql:// URL) -> SourcePublic."""
        body = _clean(
            {
                "kind": kind,
                "location": location,
                "table": table,
                "id_column": id_column,
                "text_column": text_column,
                "updated_column": updated_column,
                "metadata_columns": list(metadata_columns),
                "mode": mode,
                "interval_seconds": interval_seconds,
                "allow_internal": allow_internal,
            }
        )
        return self._run(Call("PUT", self._path(name, "/source"), _as(SourcePublic), json=body))

    def source(self, name: str) -> Any:
        """-> SourcePublic: the sync's status, counts, lag and error."""
        return self._run(Call("GET", self._path(name, "/source"), _as(SourcePublic)))

    def sync(self, name: str) -> Any:
        """Sync now -> SourcePublic (as it was asked)."""
        return self._run(Call("POST", self._path(name, "/sync"), _as(SourcePublic)))

    def remove_source(self, name: str) -> Any:
        """Stop following the table (its documents stay)."""
        return self._run(Call("DELETE", self._path(name, "/source"), lambda _: None))

    def wait(
        self,
        name: str,
        ingestion_id: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_progress: Callable[[IngestionPublic], None] | None = None,
    ) -> Any:
        """Poll until the ingestion is done, failed or cancelled -> IngestionPublic."""
        first = self.ingestion(name, ingestion_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        if inspect.isawaitable(first):

            async def go() -> IngestionPublic:
                job: IngestionPublic = await first
                while _going(job, on_progress, deadline):
                    await asyncio.sleep(poll)
                    job = await self.ingestion(name, ingestion_id)
                return job

            return go()
        job: IngestionPublic = first
        while _going(job, on_progress, deadline):
            time.sleep(poll)
            job = self.ingestion(name, ingestion_id)
        return job


def _going(
    job: IngestionPublic,
    on_progress: Callable[[IngestionPublic], None] | None,
    deadline: float | None,
) -> bool:
    if on_progress is not None:
        on_progress(job)
    if job.status not in ACTIVE:
        return False
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"ingestion {job.id} is still {job.status}")
    return True
