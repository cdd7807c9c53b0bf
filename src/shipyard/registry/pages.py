"""Web UI pages of the registry under /registry: the catalog browser (its filters are
the API's `CatalogQuery`), models and prompts with their versions, aliases per
environment, a diff between any two versions and the lineage graph; promotion
requests with approve / reject / cancel, and a rollback button per alias.

Every change goes through the service functions the API uses, audited the same way; a
refusal (four eyes, a gate, a permission) is a message on the page, audited as a failed
attempt. Names, descriptions and bodies are user input: the templates escape them."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity import service as identity
from shipyard.inputs import invalid
from shipyard.registry import assets, catalog, lineage, promotion
from shipyard.registry.api import promotions as promotions_api
from shipyard.registry.api.assets import asset_public, roll_back, version_public
from shipyard.registry.api.catalog import with_unlisted
from shipyard.registry.api.promotions import public as promotion_public
from shipyard.registry.catalog import CatalogQuery
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/registry")
T = TypeVar("T")
PLURALS = {"models": "model", "prompts": "prompt", "releases": "release"}
LIST_FILTERS = ("capabilities", "modalities", "licence")


def _attempt(ctx: Ctx, work: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a page's change (blocking); on a refusal, the message to show (audited)."""
    try:
        return work(), None
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        return None, exc.detail


def _kind(plural: str) -> str:
    kind = PLURALS.get(plural)
    if kind is None:
        raise InvalidInput(f"'{plural[:32]}' is not one of {', '.join(PLURALS)}")
    return kind


# Catalog ---------------------------------------------------------------------------------


def _query(request: Request) -> tuple[CatalogQuery, dict[str, str], str | None]:
    """The catalog filters from the page's query string (empty fields ignored)."""
    form = {k: v for k, v in request.query_params.items() if v.strip()}
    values: dict[str, Any] = {}
    for k, v in form.items():
        if k in LIST_FILTERS:
            values[k] = [p.strip() for p in v.split(",") if p.strip()]
        elif k == "commercial_use":
            values[k] = v == "true"
        else:
            values[k] = v
    try:
        return CatalogQuery.model_validate(values), form, None
    except ValidationError as exc:
        err = invalid(exc, "filter")
        return CatalogQuery(), form, err.detail


@router.get("/catalog", name="ui.registry_catalog")
def catalog_page(request: Request, ctx: Ctx = Authorized("registry:read")) -> Response:
    query, form, error = _query(request)
    with ctx.platform.db.transaction() as s:
        found = with_unlisted(ctx, catalog.entries(s, workspace_id=ctx.workspace_id), query)
    return render(
        ctx, "registry_catalog.html", "registry_catalog", entries=found, form=form, error=error
    )


# Promotions ------------------------------------------------------------------------------


def _promotions_page(ctx: Ctx, error: str | None = None, message: str | None = None) -> Response:
    me = f"{ctx.actor.kind}:{ctx.actor.id}"
    with ctx.platform.db.transaction() as s:
        found = promotion.listing(s, workspace_id=ctx.workspace_id)
        rows = [promotion_public(s, p) for p in found]
        mine = {p.id for p in found if p.requested_by == me}
    return render(
        ctx,
        "registry_promotions.html",
        "registry_promotions",
        promotions=rows,
        mine=mine,
        error=error,
        message=message,
    )


@router.get("/promotions", name="ui.registry_promotions")
async def promotions_page(ctx: Ctx = Authorized("registry:read")) -> Response:
    return await run_in_threadpool(_promotions_page, ctx)


@router.post("/promotions/{promotion_id}/{decision}", name="ui.registry_decide")
async def decide(
    promotion_id: str,
    decision: str,
    note: str = Form("", max_length=2000),
    ctx: Ctx = Authorized("registry:promote"),
) -> Response:
    """approve and reject need `registry:approve` (checked by `decide`: this route's
    own permission is the lesser one, for the requester's cancel)."""

    def work() -> str:
        with ctx.tx(target=f"promotion:{promotion_id}") as tx:
            return promotions_api.decide(ctx, tx, promotion_id, decision, note).state

    state, error = await run_in_threadpool(_attempt, ctx, work)
    if error is None:
        await ctx.platform.gateway.reload()
        ctx.platform.services["registry"].outbox.wake()
    message = f"Promotion {promotion_id}: {state}." if error is None else None
    return await run_in_threadpool(lambda: _promotions_page(ctx, error=error, message=message))


# Models, prompts, releases ---------------------------------------------------------------


@router.get("/{plural}", name="ui.registry_assets")
def assets_page(plural: str, ctx: Ctx = Authorized("registry:read")) -> Response:
    kind = _kind(plural)
    with ctx.platform.db.transaction() as s:
        rows = [
            asset_public(s, r)
            for r in assets.list_assets(s, workspace_id=ctx.workspace_id, kind=kind)
        ]
        envs = identity.environments(s, workspace_id=ctx.workspace_id)
    return render(
        ctx,
        "registry_assets.html",
        f"registry_{plural}",
        plural=plural,
        kind=kind,
        assets=rows,
        envs=envs,
    )


def _asset_page(
    ctx: Ctx,
    plural: str,
    name: str,
    *,
    a: int | None = None,
    b: int | None = None,
    shown: int | None = None,
    error: str | None = None,
    message: str | None = None,
) -> Response:
    kind = _kind(plural)
    with ctx.platform.db.transaction() as s:
        row = assets.get_asset(s, workspace_id=ctx.workspace_id, kind=kind, name=name)
        aliases = assets.aliases(s, row)
        versions = [version_public(row, v, aliases) for v in assets.list_versions(s, row)]
        envs = identity.environments(s, workspace_id=ctx.workspace_id)
        pending = [
            promotion_public(s, p)
            for p in promotion.listing(s, workspace_id=ctx.workspace_id, state="pending")
            if p.asset_id == row.id
        ]
        current = shown or (versions[-1].number if versions else None)
        graph = None
        if current is not None:
            version = assets.get_version(s, row, current)
            graph = lineage.graph(s, row, version, ctx.platform.lineage_sources)
        moves = assets.history(s, row)[:50]
        public = asset_public(s, row)
    diff = None
    if a is not None and b is not None:
        by_number = {v.number: v for v in versions}
        if a not in by_number or b not in by_number:
            error = error or f"diff: {name} has no version {a if a not in by_number else b}"
        else:
            diff = version_diff(kind, by_number[a].body, by_number[b].body, a, b)
    custom = sorted(k for k in aliases if k not in envs)
    return render(
        ctx,
        "registry_asset.html",
        f"registry_{plural}",
        plural=plural,
        kind=kind,
        asset=public,
        versions=versions,
        envs=envs,
        custom=custom,
        pending=pending,
        moves=moves,
        diff=diff,
        a=a,
        b=b,
        shown=current,
        graph=layout(graph) if graph else None,
        error=error,
        message=message,
    )


def version_diff(kind: str, old: dict[str, Any], new: dict[str, Any], a: int, b: int) -> list[str]:
    """A unified diff of two versions' bodies (a prompt's template as its text)."""

    def text(body: dict[str, Any]) -> list[str]:
        template = body.get("template") if kind == "prompt" else None
        if isinstance(template, dict):
            parts = [
                f"[{m.get('role')}]\n{m.get('content')}" for m in template.get("messages") or []
            ]
            if template.get("text") is not None:
                parts.append(str(template["text"]))
            rest = {k: v for k, v in body.items() if k != "template"}
            return "\n".join([*parts, json.dumps(rest, indent=2, sort_keys=True)]).splitlines()
        return json.dumps(body, indent=2, sort_keys=True).splitlines()

    return list(difflib.unified_diff(text(old), text(new), f"v{a}", f"v{b}", lineterm=""))


def layout(g: dict[str, Any]) -> dict[str, Any]:
    """Positions for the lineage SVG: inputs in the left column, the version in the
    middle, what uses it (and its evaluations) on the right."""
    me = next(n["id"] for n in g["nodes"] if n.get("current"))
    left = [e["from"] for e in g["edges"] if e["to"] == me]
    right = [e["to"] for e in g["edges"] if e["from"] == me]
    pos: dict[str, tuple[int, int]] = {}
    for col, ids in ((0, left), (2, right)):
        for i, node_id in enumerate(dict.fromkeys(ids)):
            pos[node_id] = (20 + col * 230, 20 + i * 56)
    rows = max(len(dict.fromkeys(left)), len(dict.fromkeys(right)), 1)
    pos[me] = (250, 20 + (rows - 1) * 28)
    nodes = [
        {**n, "x": pos[n["id"]][0], "y": pos[n["id"]][1]} for n in g["nodes"] if n["id"] in pos
    ]
    edges = [
        {
            **e,
            "x1": pos[e["from"]][0] + 200,
            "y1": pos[e["from"]][1] + 18,
            "x2": pos[e["to"]][0],
            "y2": pos[e["to"]][1] + 18,
        }
        for e in g["edges"]
        if e["from"] in pos and e["to"] in pos
    ]
    return {"nodes": nodes, "edges": edges, "height": 40 + rows * 56}


@router.get("/{plural}/{name}", name="ui.registry_asset")
async def asset_page(
    plural: str,
    name: str,
    ctx: Ctx = Authorized("registry:read"),
    a: int | None = Query(None, ge=1, le=10**9),
    b: int | None = Query(None, ge=1, le=10**9),
    version: int | None = Query(None, ge=1, le=10**9),
) -> Response:
    return await run_in_threadpool(lambda: _asset_page(ctx, plural, name, a=a, b=b, shown=version))


@router.post("/{plural}/{name}/promote", name="ui.registry_promote")
async def promote(
    plural: str,
    name: str,
    version: int = Form(ge=1, le=10**9),
    environment: str = Form(max_length=64),
    note: str = Form("", max_length=2000),
    ctx: Ctx = Authorized("registry:promote"),
) -> Response:
    def work() -> str:
        with ctx.tx(target=f"{_kind(plural)}:{name}@{environment}") as tx:
            row = promotions_api.request(
                ctx,
                tx,
                kind=_kind(plural),
                name=name,
                version=version,
                environment=environment,
                note=note,
            )
            return row.state

    return await _after(
        ctx, plural, name, work, lambda state: f"Promotion of v{version} to {environment}: {state}."
    )


@router.post("/{plural}/{name}/aliases/{alias}/rollback", name="ui.registry_rollback")
async def rollback(
    plural: str, name: str, alias: str, ctx: Ctx = Authorized("registry:approve")
) -> Response:
    def work() -> int:
        with ctx.tx(target=f"{_kind(plural)}:{name}@{alias}") as tx:
            return roll_back(ctx, tx, _kind(plural), name, alias)[1]

    return await _after(ctx, plural, name, work, lambda n: f"{name}@{alias} rolled back to v{n}.")


async def _after(
    ctx: Ctx, plural: str, name: str, work: Callable[[], T], say: Callable[[T], str]
) -> Response:
    done, error = await run_in_threadpool(_attempt, ctx, work)
    if error is None:
        await ctx.platform.gateway.reload()
        ctx.platform.services["registry"].outbox.wake()
    message = say(done) if error is None and done is not None else None
    return await run_in_threadpool(
        lambda: _asset_page(ctx, plural, name, error=error, message=message)
    )
