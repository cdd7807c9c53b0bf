"""Gateway admin API under /api/gateway: thin routes over `gateway.admin`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from shipyard.gateway.config import manage as admin
from shipyard.gateway.config.prices import SEED_PRICES
from shipyard.gateway.config.schemas import (
    DeploymentPublic,
    LimitsIn,
    LimitsPublic,
    PriceIn,
    PricePublic,
    ProviderCreate,
    ProviderPublic,
    ProviderUpdate,
    RecordPublic,
    RouteIn,
    RoutePublic,
)
from shipyard.gateway.config.specs import Limits, RouteSpec
from shipyard.gateway.tables import PriceRow, ProviderRow
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Timestamp
from shipyard.plugins import PROVIDERS
from shipyard.store import utcnow

router = APIRouter(prefix="/api/gateway", tags=["gateway"])
T = TypeVar("T")


def _provider(row: ProviderRow) -> ProviderPublic:
    return ProviderPublic(
        id=row.id,
        name=row.name,
        kind=row.kind,
        base_url=row.base_url,
        has_api_key=row.api_key_enc is not None,
        header_names=sorted(row.headers or {}),
        options=row.options or {},
        allow_internal=row.allow_internal,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _change(ctx: Ctx, work: Callable[[], T]) -> T:
    """Run a configuration change (its own transaction) off the event loop, then reload
    this replica's snapshot; other replicas pick the change up from the version row."""
    out = await run_in_threadpool(work)
    await ctx.platform.gateway.reload()
    return out


@router.get("/providers", name="gateway.providers.list")
def list_providers(ctx: Ctx = Authorized("gateway:read")) -> list[ProviderPublic]:
    with ctx.tx() as tx:
        return [
            _provider(r) for r in admin.list_providers(tx.session, workspace_id=ctx.workspace_id)
        ]


@router.post("/providers", status_code=201, name="gateway.providers.create")
async def create_provider(
    body: ProviderCreate, ctx: Ctx = Authorized("gateway:manage")
) -> ProviderPublic:
    def work() -> ProviderPublic:
        with ctx.tx(target=f"provider:{body.name}") as tx:
            row = admin.create_provider(
                tx.session,
                box=ctx.platform.box,
                kinds=ctx.platform.plugins.names(PROVIDERS),
                workspace_id=ctx.workspace_id,
                body=body,
                platform=ctx.actor.can("gateway:internal"),
            )
            return _provider(row)

    return await _change(ctx, work)


@router.patch("/providers/{name}", name="gateway.providers.update")
async def update_provider(
    name: str, body: ProviderUpdate, ctx: Ctx = Authorized("gateway:manage")
) -> ProviderPublic:
    def work() -> ProviderPublic:
        with ctx.tx(target=f"provider:{name}") as tx:
            row = admin.update_provider(
                tx.session,
                box=ctx.platform.box,
                workspace_id=ctx.workspace_id,
                name=name,
                body=body,
                platform=ctx.actor.can("gateway:internal"),
            )
            return _provider(row)

    return await _change(ctx, work)


@router.delete("/providers/{name}", status_code=204, name="gateway.providers.delete")
async def delete_provider(name: str, ctx: Ctx = Authorized("gateway:manage")) -> Response:
    def work() -> None:
        with ctx.tx(target=f"provider:{name}") as tx:
            admin.delete_provider(tx.session, workspace_id=ctx.workspace_id, name=name)

    await _change(ctx, work)
    return Response(status_code=204)


def route_public(ctx: Ctx, route: RouteSpec) -> RoutePublic:
    balancer = ctx.platform.gateway.balancer
    return RoutePublic(
        id=route.id,
        name=route.name,
        kind=route.kind,
        strategy=route.strategy,
        retries=route.retries,
        fallbacks={k: list(v) for k, v in route.fallbacks.items()},
        cache_ttl=route.cache_ttl,
        description=route.description,
        semantic_threshold=route.semantic_threshold,
        semantic_embedding_route=route.semantic_embedding_route,
        builtin=route.workspace_id is None,
        deployments=[
            DeploymentPublic(
                id=d.id,
                provider=d.provider.name,
                model=d.model,
                weight=d.weight,
                params=d.params,
                timeouts={
                    "connect": d.timeouts.connect,
                    "first_token": d.timeouts.first_token,
                    "total": d.timeouts.total,
                },
                health=balancer.status(d.id),
                source=d.source,
            )
            for d in route.deployments
        ],
        target=route.target,
        problem=route.problem,
    )


@router.get("/routes", name="gateway.routes.list")
def list_routes(ctx: Ctx = Authorized("gateway:read")) -> list[RoutePublic]:
    snap = ctx.platform.gateway.snapshot
    return [route_public(ctx, r) for r in snap.visible_routes(ctx.workspace_id)]


@router.put("/routes/{name}", name="gateway.routes.put")
async def put_route(
    name: str, body: RouteIn, ctx: Ctx = Authorized("gateway:manage")
) -> RoutePublic:
    if body.name != name:
        from shipyard.errors import InvalidInput

        raise InvalidInput("name: must match the name in the path")

    def work() -> None:
        with ctx.tx(target=f"route:{name}") as tx:
            admin.put_route(
                tx.session,
                workspace_id=ctx.workspace_id,
                body=body,
                resolvers=ctx.platform.route_resolvers,
            )

    await _change(ctx, work)
    route = ctx.platform.gateway.snapshot.route(ctx.workspace_id, name)
    assert route is not None
    return route_public(ctx, route)


@router.delete("/routes/{name}", status_code=204, name="gateway.routes.delete")
async def delete_route(name: str, ctx: Ctx = Authorized("gateway:manage")) -> Response:
    def work() -> None:
        with ctx.tx(target=f"route:{name}") as tx:
            admin.delete_route(tx.session, workspace_id=ctx.workspace_id, name=name)

    await _change(ctx, work)
    return Response(status_code=204)


@router.get("/prices", name="gateway.prices.list")
def list_prices(ctx: Ctx = Authorized("gateway:read")) -> list[PricePublic]:
    prices = ctx.platform.gateway.snapshot.prices or dict(SEED_PRICES)
    return [
        PricePublic(model=m, input=p.input, output=p.output, cached_input=p.cached_input)
        for m, p in sorted(prices.items())
    ]


@router.put("/prices/{model:path}", name="gateway.prices.put")
async def put_price(
    model: str, body: PriceIn, ctx: Ctx = Authorized("gateway:prices")
) -> PricePublic:
    def work() -> PriceRow:
        with ctx.tx(target=f"price:{model}") as tx:
            return admin.set_price(tx.session, model=model, body=body)

    row = await _change(ctx, work)
    return PricePublic(
        model=row.model, input=row.input, output=row.output, cached_input=row.cached_input
    )


async def _limits_public(ctx: Ctx, scope: str, lim: Limits) -> LimitsPublic:
    spent = None
    if lim.budget_usd is not None:
        spent = await ctx.platform.gateway.ledger_spent(scope, lim.budget_period)
    return LimitsPublic(
        scope=scope,
        rpm=lim.rpm,
        tpm=lim.tpm,
        max_tokens=lim.max_tokens,
        budget_usd=lim.budget_usd,
        budget_period=lim.budget_period,
        allowed_routes=list(lim.allowed_routes) if lim.allowed_routes is not None else None,
        spent_usd=spent,
    )


@router.get("/limits", name="gateway.limits.list")
async def list_limits(ctx: Ctx = Authorized("gateway:read")) -> list[LimitsPublic]:
    snap = ctx.platform.gateway.snapshot
    keys = await run_in_threadpool(_workspace_keys, ctx)
    mine = [
        (s, lim)
        for s, lim in snap.limits.items()
        if s == f"workspace:{ctx.workspace_id}"
        or s.startswith(f"user:{ctx.workspace_id}:")
        or (s.startswith("key:") and s[4:] in keys)
    ]
    return [await _limits_public(ctx, s, lim) for s, lim in sorted(mine)]


def _workspace_keys(ctx: Ctx) -> set[str]:
    from shipyard.identity import service

    with ctx.platform.db.transaction() as s:
        return {
            k.id for k in service.list_keys(s, workspace_id=ctx.workspace_id, include_revoked=True)
        }


@router.put("/limits/{kind}/{ref:path}", name="gateway.limits.put")
async def put_limits(
    kind: str, ref: str, body: LimitsIn, ctx: Ctx = Authorized("gateway:manage")
) -> LimitsPublic:
    def work() -> str:
        with ctx.tx() as tx:
            scope = admin.scope_for(tx.session, workspace_id=ctx.workspace_id, kind=kind, ref=ref)
            tx.target = f"limits:{scope}"
            admin.set_limits(tx.session, workspace_id=ctx.workspace_id, scope=scope, body=body)
            return scope

    scope = await _change(ctx, work)
    return await _limits_public(ctx, scope, ctx.platform.gateway.snapshot.limits[scope])


@router.delete("/limits/{kind}/{ref:path}", status_code=204, name="gateway.limits.delete")
async def delete_limits(kind: str, ref: str, ctx: Ctx = Authorized("gateway:manage")) -> Response:
    def work() -> None:
        with ctx.tx() as tx:
            scope = admin.scope_for(tx.session, workspace_id=ctx.workspace_id, kind=kind, ref=ref)
            tx.target = f"limits:{scope}"
            admin.delete_limits(tx.session, scope=scope)

    await _change(ctx, work)
    return Response(status_code=204)


@router.get("/requests", name="gateway.requests.list")
def list_requests(
    route: str | None = Query(default=None, max_length=128),
    key_id: str | None = Query(default=None, max_length=32),
    status: int | None = Query(default=None, ge=100, le=599),
    errors_only: bool = False,
    since: Timestamp | None = None,
    before: Timestamp | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    ctx: Ctx = Authorized("gateway:read"),
) -> list[RecordPublic]:
    rows = ctx.platform.gateway.records.store.search(
        workspace_id=ctx.workspace_id,
        route=route,
        key_id=key_id,
        status=status,
        errors_only=errors_only,
        since=since,
        before=before,
        limit=limit,
    )
    return [RecordPublic.of(r) for r in rows]


@router.get("/usage", name="gateway.usage")
def usage(
    hours: int = Query(default=24, ge=1, le=24 * 90), ctx: Ctx = Authorized("gateway:read")
) -> list[dict[str, object]]:
    store = ctx.platform.gateway.records.store
    return store.usage(  # type: ignore[no-any-return]  # Platform services are Any
        workspace_id=ctx.workspace_id, since=utcnow() - timedelta(hours=hours)
    )


@router.post("/import/litellm", name="gateway.import_litellm")
async def import_litellm(
    body: dict[str, object],
    dry_run: bool = False,
    allow_internal: bool = False,
    ctx: Ctx = Authorized("gateway:manage"),
) -> dict[str, object]:
    """Import a LiteLLM proxy config (parsed YAML as JSON; `os.environ/` resolved by the
    caller). Existing providers with the same name are kept; routes are replaced.
    `allow_internal` sets it on every imported provider (platform administrators)."""
    from pydantic import ValidationError

    from shipyard.errors import InvalidInput
    from shipyard.gateway.config.litellm_import import plan

    config = body.get("config", body)
    try:
        imported = plan(config)
    except (ValidationError, ValueError, TypeError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise InvalidInput(f"config: {detail}"[:300]) from None

    def work() -> None:
        with ctx.tx(target="litellm-config") as tx:
            existing = {
                p.name for p in admin.list_providers(tx.session, workspace_id=ctx.workspace_id)
            }
            for p in imported.providers:
                if p.name not in existing:
                    admin.create_provider(
                        tx.session,
                        box=ctx.platform.box,
                        kinds=ctx.platform.plugins.names(PROVIDERS),
                        workspace_id=ctx.workspace_id,
                        body=p.model_copy(update={"allow_internal": allow_internal}),
                        platform=ctx.actor.can("gateway:internal"),
                    )
            for r in imported.routes:
                admin.put_route(tx.session, workspace_id=ctx.workspace_id, body=r)
            tx.detail = f"{len(imported.providers)} providers, {len(imported.routes)} routes"

    if not dry_run:
        await _change(ctx, work)
    return {
        "dry_run": dry_run,
        "providers": [
            {"name": p.name, "kind": p.kind, "base_url": p.base_url} for p in imported.providers
        ],
        "routes": [
            {
                "name": r.name,
                "strategy": r.strategy,
                "retries": r.retries,
                "deployments": len(r.deployments),
                "fallbacks": r.fallbacks,
            }
            for r in imported.routes
        ],
        "notes": imported.notes,
    }
