"""Artifacts under /api/registry/artifacts: upload (the raw body, streamed into the
artifact store: never held in memory), list, download; and a version's files by name
under /api/registry/models/{name}/versions/{n}/files/{path}.

A blob is kept once by content, but readable only by the workspaces that uploaded it
(`registry_blobs`): a checksum is not a capability. Names go through `safe_name`
(no `..`, absolute, encoded or look-alike paths) before anything is read, and formats
through `check_format` (pickles refused)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated
from urllib.parse import quote

import anyio
import anyio.from_thread
from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from shipyard.errors import NotFound
from shipyard.http.deps import Authorized, Ctx
from shipyard.registry import assets
from shipyard.registry.artifacts import ArtifactStore, check_sha256, safe_name
from shipyard.registry.schemas import ArtifactPublic
from shipyard.registry.tables import BlobRow

router = APIRouter(prefix="/api/registry", tags=["registry"])
OCTETS = {
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
}


def public(row: BlobRow) -> ArtifactPublic:
    return ArtifactPublic(
        sha256=row.sha256,
        name=row.name,
        size=row.size,
        format=row.format,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def store(ctx: Ctx) -> ArtifactStore:
    return ctx.platform.services["registry"].artifacts  # type: ignore[no-any-return]  # Registry


def owned(ctx: Ctx, sha256: str) -> BlobRow:
    sha256 = check_sha256(sha256)
    with ctx.platform.db.transaction() as s:
        row = s.get(BlobRow, (ctx.workspace_id, sha256))
        if row is None:
            raise NotFound(f"artifact {sha256} not found in this workspace")
        s.expunge(row)
        return row


@router.post(
    "/artifacts",
    status_code=201,
    name="registry.artifacts.upload",
    openapi_extra={"requestBody": {"required": True, **OCTETS}},
)
async def upload(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=500, description="e.g. model.safetensors")],
    ctx: Ctx = Authorized("registry:write"),
) -> ArtifactPublic:
    """The body is the file. Stored by its sha256; the same bytes twice are one blob."""
    clean = safe_name(name)  # before a byte is read
    chunks: AsyncIterator[bytes] = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    def body() -> Iterator[bytes]:  # the request's chunks, pulled from a worker thread
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            if chunk:
                yield chunk

    ref = await anyio.to_thread.run_sync(lambda: store(ctx).put(body(), name=clean))
    with ctx.tx(target=f"artifact:{ref.sha256}") as tx:
        row = tx.session.get(BlobRow, (ctx.workspace_id, ref.sha256))
        if row is None:
            row = BlobRow(
                workspace_id=ctx.workspace_id,
                sha256=ref.sha256,
                name=ref.name,
                size=ref.size,
                format=ref.format,
                created_by=ctx.actor.ref,
            )
            tx.session.add(row)
            tx.session.flush()
        tx.detail = f"{ref.name} ({ref.format}, {ref.size} bytes)"
        return public(row)


@router.get("/artifacts", name="registry.artifacts.list")
def list_artifacts(
    ctx: Ctx = Authorized("registry:read"),
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ArtifactPublic]:
    with ctx.tx() as tx:
        rows = tx.session.scalars(
            select(BlobRow)
            .where(BlobRow.workspace_id == ctx.workspace_id)
            .order_by(BlobRow.created_at.desc())
            .limit(limit)
        )
        return [public(r) for r in rows]


def stream(ctx: Ctx, row: BlobRow, filename: str) -> StreamingResponse:
    blob = store(ctx).open(row.sha256)
    headers = {
        "content-length": str(blob.size),
        "content-disposition": f"attachment; filename*=UTF-8''{quote(filename.rsplit('/', 1)[-1])}",
        "x-content-sha256": row.sha256,
    }
    return StreamingResponse(
        iter(blob),
        media_type="application/octet-stream",
        headers=headers,
        background=BackgroundTask(blob.close),
    )


@router.get(
    "/artifacts/{sha256}",
    name="registry.artifacts.download",
    response_class=StreamingResponse,
    responses={200: {"description": "The blob's bytes.", **OCTETS}},
)
def download(sha256: str, ctx: Ctx = Authorized("registry:read")) -> StreamingResponse:
    """Checked against its sha256 as it streams: a corrupted blob is never sent whole."""
    row = owned(ctx, sha256)
    return stream(ctx, row, row.name)


@router.get(
    "/models/{name}/versions/{number}/files/{path:path}",
    name="registry.models.file",
    response_class=StreamingResponse,
    responses={200: {"description": "The file's bytes.", **OCTETS}},
)
def version_file(
    name: str,
    number: Annotated[int, Path(ge=1, le=10**9)],
    path: str,
    ctx: Ctx = Authorized("registry:read"),
) -> StreamingResponse:
    """One file of a model version, by the name it was registered under."""
    clean = safe_name(path, param="path")
    with ctx.tx() as tx:
        asset = assets.get_asset(tx.session, workspace_id=ctx.workspace_id, kind="model", name=name)
        version = assets.get_version(tx.session, asset, number)
        found = next((a for a in version.artifacts or [] if a.get("name") == clean), None)
    if found is None:
        raise NotFound(f"{name} v{number} has no file '{clean}'")
    return stream(ctx, owned(ctx, str(found["sha256"])), clean)
