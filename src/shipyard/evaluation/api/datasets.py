"""Versioned datasets under /api/datasets (and uploads under /api/dataset-uploads, whose
bodies are files, not JSON). Thin routes over `shipyard.evaluation.datasets` and
`shipyard.evaluation.files`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, PermissionDenied, Unavailable
from shipyard.evaluation import datasets, files
from shipyard.evaluation.datasets import Change, ItemIn
from shipyard.evaluation.schemas import (
    ChangeIn,
    DatasetIn,
    DatasetPublic,
    DatasetUpdate,
    FromTracesIn,
    ItemPage,
    ItemPublic,
)
from shipyard.evaluation.schemas import (
    VersionPublic as VersionPublic,  # re-exported for the pages
)
from shipyard.evaluation.tables import DatasetItemRow, DatasetRow, DatasetVersionRow
from shipyard.http.deps import Authorized, Ctx

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
uploads = APIRouter(prefix="/api/dataset-uploads", tags=["datasets"])
DatasetName = Annotated[str, Path(pattern=datasets.NAME)]


def version_public(row: DatasetVersionRow) -> VersionPublic:
    return VersionPublic(
        version=row.number,
        message=row.message,
        author=row.author,
        source=row.source,
        item_count=row.item_count,
        added=row.added,
        updated=row.updated,
        removed=row.removed,
        created_at=row.created_at,
    )


def dataset_public(row: DatasetRow, count: int) -> DatasetPublic:
    return DatasetPublic(
        id=row.id,
        name=row.name,
        description=row.description,
        latest=row.latest,
        item_count=count,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def item_public(row: DatasetItemRow) -> ItemPublic:
    return ItemPublic(
        id=row.key,
        inputs=row.inputs,
        expected=row.expected,
        metadata=row.metadata_ or {},
        source_trace_id=row.source_trace_id,
        version=row.from_version,
    )


def _checked(items: list[ItemIn], where: str) -> None:
    for n, item in enumerate(items):
        item.check_size(f"{where}.{n}")


@router.post("", status_code=201, name="datasets.create")
def create(body: DatasetIn, ctx: Ctx = Authorized("datasets:write")) -> DatasetPublic:
    """A new dataset; with `items`, its version 1 holds them."""
    _checked(body.items, "items")
    with ctx.tx(target=f"dataset:{body.name}") as tx:
        row = datasets.create(
            tx.session,
            workspace_id=ctx.workspace_id,
            name=body.name,
            description=body.description,
            author=ctx.actor.ref,
        )
        count = 0
        if body.items:
            v = datasets.change(
                tx.session, row, Change(add=body.items), author=ctx.actor.ref, message=body.message
            )
            count = v.item_count
        return dataset_public(row, count)


@router.get("", name="datasets.list")
def list_datasets(ctx: Ctx = Authorized("datasets:read")) -> list[DatasetPublic]:
    with ctx.tx() as tx:
        return [dataset_public(row, n) for row, n in datasets.counted(tx.session, ctx.workspace_id)]


@router.get("/{name}", name="datasets.get")
def get_dataset(name: DatasetName, ctx: Ctx = Authorized("datasets:read")) -> DatasetPublic:
    with ctx.tx() as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        count = datasets.version(tx.session, row, None).item_count if row.latest else 0
        return dataset_public(row, count)


@router.patch("/{name}", name="datasets.update")
def update_dataset(
    name: DatasetName, body: DatasetUpdate, ctx: Ctx = Authorized("datasets:write")
) -> DatasetPublic:
    with ctx.tx(target=f"dataset:{name}") as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        row.description = body.description
        count = datasets.version(tx.session, row, None).item_count if row.latest else 0
        return dataset_public(row, count)


@router.delete("/{name}", status_code=204, name="datasets.delete")
def delete_dataset(name: DatasetName, ctx: Ctx = Authorized("datasets:write")) -> Response:
    """The dataset, all its versions and the runs on it."""
    with ctx.tx(target=f"dataset:{name}") as tx:
        tx.session.delete(datasets.get(tx.session, ctx.workspace_id, name))
    return Response(status_code=204)


@router.get("/{name}/versions", name="datasets.versions")
def list_versions(name: DatasetName, ctx: Ctx = Authorized("datasets:read")) -> list[VersionPublic]:
    """Newest first."""
    with ctx.tx() as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        return [version_public(v) for v in datasets.versions(tx.session, row)]


@router.post("/{name}/versions", status_code=201, name="datasets.change")
def change(
    name: DatasetName, body: ChangeIn, ctx: Ctx = Authorized("datasets:write")
) -> VersionPublic:
    _checked(body.add, "add")
    delta = Change(add=body.add, update=body.update, remove=body.remove)
    with ctx.tx(target=f"dataset:{name}") as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        v = datasets.change(
            tx.session,
            row,
            delta,
            author=ctx.actor.ref,
            message=body.message,
            base_version=body.base_version,
        )
        tx.detail = f"version {v.number}: +{v.added} ~{v.updated} -{v.removed}"
        return version_public(v)


def _tracing(ctx: Ctx) -> Any:
    service = ctx.platform.services.get("tracing")
    store = None if service is None else getattr(service, "store", None)
    if store is None:
        raise Unavailable("the trace store is starting", retry_after=1)
    return store


@router.post("/{name}/from-traces", status_code=201, name="datasets.from_traces")
def from_traces(
    name: DatasetName, body: FromTracesIn, ctx: Ctx = Authorized("datasets:write")
) -> VersionPublic:
    """Items from traces: each trace's input, the correction given on it (else its
    output), its thumbs, and a link back to it. Reading traces needs `traces:read`."""
    if not ctx.actor.can("traces:read"):
        raise PermissionDenied("making items from traces needs traces:read")
    store = _tracing(ctx)
    with ctx.tx(target=f"dataset:{name}") as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        items = datasets.from_traces(
            tx.session,
            store,
            workspace_id=ctx.workspace_id,
            trace_ids=list(dict.fromkeys(body.trace_ids)),
            use_corrections=body.use_corrections,
        )
        v = datasets.change(
            tx.session,
            row,
            Change(add=items),
            author=ctx.actor.ref,
            message=body.message or f"{len(items)} items from traces",
            source="traces",
        )
        return version_public(v)


def _cursor(value: str | None) -> int:
    if not value:
        return -1
    if not value.isdigit() or len(value) > 12:
        raise InvalidInput("cursor: not a cursor this API returned", param="cursor")
    return int(value)


@router.get("/{name}/items", name="datasets.items")
def list_items(
    name: DatasetName,
    ctx: Ctx = Authorized("datasets:read"),
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    cursor: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ItemPage:
    """The items of a version (default: the latest), in the order they were added."""
    with ctx.tx() as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        v = datasets.version(tx.session, row, version)
        rows = datasets.items(tx.session, row, v.number, after=_cursor(cursor), limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return ItemPage(
            version=v.number,
            items=[item_public(r) for r in rows],
            next_cursor=str(rows[-1].position) if more else None,
        )


@router.get("/{name}/export", name="datasets.export", response_class=StreamingResponse)
def export(
    name: DatasetName,
    ctx: Ctx = Authorized("datasets:read"),
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    format: Literal["jsonl", "openai", "dpo"] = "jsonl",
) -> StreamingResponse:
    """JSON lines: the items (`jsonl`), OpenAI chat fine-tuning examples (`openai`:
    items with an expected output), or DPO preference pairs (`dpo`: chosen over
    rejected, from corrections and thumbs). `X-Shipyard-Skipped` counts the items that
    had nothing to export in that format."""
    with ctx.tx() as tx:
        row = datasets.get(tx.session, ctx.workspace_id, name)
        v = datasets.version(tx.session, row, version)
        rows = datasets.items(tx.session, row, v.number)
        lines, skipped = files.export(rows, format)
    filename = f"{row.name}-v{v.number}-{format}.jsonl"
    return StreamingResponse(
        iter(lines),
        media_type="application/jsonl",
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "x-shipyard-version": str(v.number),
            "x-shipyard-skipped": str(skipped),
        },
    )


FILE = {
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/jsonl": {"schema": {"type": "string"}},
    }
}


@uploads.post(
    "/{name}",
    status_code=201,
    name="datasets.upload",
    openapi_extra={"requestBody": {"required": True, **FILE}},
)
async def upload(
    request: Request,
    name: DatasetName,
    format: Literal["jsonl", "csv"],
    ctx: Ctx = Authorized("datasets:write"),
    message: Annotated[str, Query(max_length=2000)] = "",
    create: bool = False,
) -> VersionPublic:
    """The body is the file; its items become one new version, or nothing is written
    (a bad line is named). `create=true` makes the dataset when it does not exist."""
    limit = ctx.platform.settings.dataset_upload_max_bytes
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"the file exceeds {limit} bytes")
    items = await anyio.to_thread.run_sync(files.parse, bytes(data), format)
    return await anyio.to_thread.run_sync(
        lambda: store_upload(ctx, name, items, fmt=format, message=message, create=create)
    )


def store_upload(
    ctx: Ctx, name: str, items: list[ItemIn], *, fmt: str, message: str, create: bool
) -> VersionPublic:
    """An upload's parsed items as one new version (blocking); `create`: make the
    dataset when it does not exist. The upload route and the dataset page share it."""
    with ctx.tx(target=f"dataset:{name}") as tx:
        try:
            row = datasets.get(tx.session, ctx.workspace_id, name)
        except NotFound:
            if not create:
                raise
            row = datasets.create(
                tx.session,
                workspace_id=ctx.workspace_id,
                name=name,
                description="",
                author=ctx.actor.ref,
            )
        v = datasets.change(
            tx.session,
            row,
            Change(add=items),
            author=ctx.actor.ref,
            message=message or f"{len(items)} items uploaded ({fmt})",
            source="upload",
        )
        tx.detail = f"version {v.number}: +{v.added} from {fmt}"
        return version_public(v)
