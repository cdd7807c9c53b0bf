"""The model catalog under /api/registry/catalog: search and filter, entries, YAML
import and export, benchmarks. Thin routes over `shipyard.registry.catalog`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from shipyard.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict
from shipyard.registry import catalog
from shipyard.registry.api import change
from shipyard.registry.catalog import CatalogEntry, CatalogEntryPublic, CatalogQuery, ImportResult

router = APIRouter(prefix="/api/registry/catalog", tags=["registry"])
MAX_YAML_BYTES = 2 * 1024 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")


@router.get("", name="registry.catalog.search")
def search(
    query: Annotated[CatalogQuery, Query()], ctx: Ctx = Authorized("registry:read")
) -> list[CatalogEntryPublic]:
    """Entries that match every filter given, in `order` (cheapest first by default).
    Models a gateway route reaches that no entry describes are listed too (`unlisted`),
    with only what the route says, so every reachable model has an entry."""
    with ctx.tx() as tx:
        return with_unlisted(ctx, catalog.entries(tx.session, workspace_id=ctx.workspace_id), query)


def with_unlisted(
    ctx: Ctx, entries: list[CatalogEntryPublic], query: CatalogQuery
) -> list[CatalogEntryPublic]:
    """The query over the entries plus the unlisted models of the gateway's snapshot
    (the catalog page lists the same)."""
    routes = ctx.platform.gateway.snapshot.visible_routes(ctx.workspace_id)
    return query.select(entries + catalog.unlisted(routes, entries))


CATALOG_FILE = {
    "type": "object",
    "properties": {"models": {"type": "array", "items": {"type": "object"}}},
}
YAML_ONLY = {"content": {"application/yaml": {"schema": CATALOG_FILE}}}


@router.get(
    "/export",
    name="registry.catalog.export",
    response_class=Response,
    responses={200: {"description": "A catalog file (`models: [...]`).", **YAML_ONLY}},
)
def export(
    ctx: Ctx = Authorized("registry:read"), builtin: Annotated[bool, Query()] = False
) -> Response:
    """The workspace's entries as a catalog file (what `import` reads back)."""
    with ctx.tx() as tx:
        text = catalog.export_yaml(tx.session, workspace_id=ctx.workspace_id, builtin=builtin)
    return Response(text, media_type="application/yaml")


@router.post(
    "/import",
    name="registry.catalog.import",
    openapi_extra={"requestBody": {"required": True, **YAML_ONLY}},
)
async def import_(
    request: Request,
    ctx: Ctx = Authorized("registry:write"),
    replace: Annotated[bool, Query(description="also delete entries the file omits")] = False,
) -> ImportResult:
    """A catalog file as the body (`Content-Type: application/yaml`); all or nothing."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in YAML_TYPES:
        raise UnsupportedMedia(f"content-type: send the catalog as one of {', '.join(YAML_TYPES)}")
    body = await request.body()
    if len(body) > MAX_YAML_BYTES:
        raise PayloadTooLarge(f"body: a catalog file is at most {MAX_YAML_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body: the catalog file is not UTF-8") from None
    if "\x00" in text:
        raise InvalidInput("body: must not contain NUL characters")

    def work() -> ImportResult:
        with ctx.tx(target="catalog") as tx:
            counts = catalog.import_yaml(
                tx.session, workspace_id=ctx.workspace_id, text=text, replace=replace
            )
            tx.detail = ", ".join(f"{v} {k}" for k, v in counts.items())
            return ImportResult(**counts)

    return await change(ctx, work)


@router.get("/{name}", name="registry.catalog.get")
def get_entry(name: str, ctx: Ctx = Authorized("registry:read")) -> CatalogEntryPublic:
    with ctx.tx() as tx:
        return catalog.get_entry(tx.session, workspace_id=ctx.workspace_id, name=name)


@router.put("/{name}", name="registry.catalog.put")
async def put_entry(
    name: str, body: CatalogEntry, ctx: Ctx = Authorized("registry:write")
) -> CatalogEntryPublic:
    if body.name != name:
        raise InvalidInput("name: must match the name in the path", param="name")

    def work() -> CatalogEntryPublic:
        with ctx.tx(target=f"catalog:{name}") as tx:
            row, _ = catalog.put_entry(tx.session, workspace_id=ctx.workspace_id, entry=body)
            return CatalogEntryPublic(**row.entry)

    return await change(ctx, work)


@router.delete("/{name}", status_code=204, name="registry.catalog.delete")
async def delete_entry(name: str, ctx: Ctx = Authorized("registry:write")) -> Response:
    def work() -> None:
        with ctx.tx(target=f"catalog:{name}") as tx:
            catalog.delete_entry(tx.session, workspace_id=ctx.workspace_id, name=name)

    await change(ctx, work)
    return Response(status_code=204)


class BenchmarkIn(Strict):
    """What an evaluation run reports for an entry."""

    dataset: str | None = Field(default=None, min_length=1, max_length=128)
    score: float | None = Field(default=None, ge=-1e9, le=1e9)
    latency_ms: float | None = Field(default=None, ge=0, le=3_600_000)


@router.post("/{name}/benchmarks", name="registry.catalog.benchmarks")
async def set_benchmark(
    name: str, body: BenchmarkIn, ctx: Ctx = Authorized("registry:write")
) -> CatalogEntryPublic:
    if (body.dataset is None) != (body.score is None):
        raise InvalidInput("score: give a dataset and its score together", param="score")
    if body.dataset is None and body.latency_ms is None:
        raise InvalidInput("dataset: give a dataset and score, or latency_ms", param="dataset")

    def work() -> CatalogEntryPublic:
        with ctx.tx(target=f"catalog:{name}") as tx:
            return catalog.set_benchmark(
                tx.session,
                workspace_id=ctx.workspace_id,
                name=name,
                dataset=body.dataset,
                score=body.score,
                latency_ms=body.latency_ms,
            )

    return await change(ctx, work)
