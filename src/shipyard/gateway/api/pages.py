"""Web UI pages of the gateway: overview with charts, providers, routes, key limits,
request log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Form
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.gateway.config import manage as admin
from shipyard.gateway.config.schemas import LimitsIn, ProviderCreate, RouteIn
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity import service as identity
from shipyard.plugins import PROVIDERS
from shipyard.store import utcnow
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/gateway")


def _bars(rows: list[dict[str, Any]], field: str, fmt: str) -> list[dict[str, Any]]:
    top = max((r[field] for r in rows), default=0) or 1
    return [
        {"label": r["route"], "value": format(r[field], fmt), "pct": 100 * r[field] / top}
        for r in rows
    ]


def _attempt(ctx: Ctx, work: Callable[[], None]) -> str | None:
    """Run a form's change; on bad input return the message to show (and audit it)."""
    try:
        work()
    except ValidationError as exc:
        err = InvalidInput(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        )
        _audit_ui_failure(ctx, err)
        return err.detail
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        return exc.detail
    return None


async def _attempt_and_reload(ctx: Ctx, work: Callable[[], None]) -> str | None:
    error = await run_in_threadpool(_attempt, ctx, work)
    await ctx.platform.gateway.reload()
    return error


@router.get("", name="ui.gateway")
async def overview(ctx: Ctx = Authorized("gateway:read")) -> Response:
    def load() -> tuple[list[dict[str, Any]], list[Any]]:
        store = ctx.platform.gateway.records.store
        usage = store.usage(workspace_id=ctx.workspace_id, since=utcnow() - timedelta(hours=24))
        recent = store.search(workspace_id=ctx.workspace_id, limit=200)
        return usage, recent

    usage, recent = await run_in_threadpool(load)
    latencies = sorted(r.latency_ms for r in recent)
    p = (
        (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))])
        if latencies
        else None
    )
    stats = {
        "requests": sum(u["requests"] for u in usage),
        "cost": sum(u["cost_usd"] for u in usage),
        "tokens": sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage),
        "errors": sum(1 for r in recent if r.status >= 400),
        "p50": p(0.5) if p else None,
        "p95": p(0.95) if p else None,
    }
    return await run_in_threadpool(
        render,
        ctx,
        "gateway_overview.html",
        "gateway",
        stats=stats,
        requests_chart=_bars(usage, "requests", "d"),
        cost_chart=_bars(usage, "cost_usd", ".6f"),
        latency_chart=_bars(usage, "avg_latency_ms", ".1f"),
    )


@router.get("/providers", name="ui.gateway_providers")
def providers(ctx: Ctx = Authorized("gateway:read")) -> Response:
    return _providers(ctx, None)


def _providers(ctx: Ctx, error: str | None) -> Response:
    with ctx.platform.db.transaction() as s:
        rows = admin.list_providers(s, workspace_id=ctx.workspace_id)
    return render(
        ctx,
        "gateway_providers.html",
        "gateway_providers",
        providers=rows,
        kinds=sorted(ctx.platform.plugins.names(PROVIDERS)),
        error=error,
    )


@router.post("/providers", name="ui.gateway_providers_create")
async def providers_create(
    name: str = Form(max_length=64),
    kind: str = Form(max_length=32),
    base_url: str = Form(default="", max_length=500),
    api_key: str = Form(default="", max_length=2000),
    allow_internal: bool = Form(default=False),
    ctx: Ctx = Authorized("gateway:manage"),
) -> Response:
    def work() -> None:
        body = ProviderCreate(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key=api_key or None,
            allow_internal=allow_internal,
        )
        with ctx.tx(target=f"provider:{name}") as tx:
            admin.create_provider(
                tx.session,
                box=ctx.platform.box,
                kinds=ctx.platform.plugins.names(PROVIDERS),
                workspace_id=ctx.workspace_id,
                body=body,
                platform=ctx.actor.can("gateway:internal"),
            )

    error = await _attempt_and_reload(ctx, work)
    return await run_in_threadpool(_providers, ctx, error)


@router.get("/routes", name="ui.gateway_routes")
def routes(ctx: Ctx = Authorized("gateway:read")) -> Response:
    return _routes(ctx, None)


def _routes(ctx: Ctx, error: str | None) -> Response:
    from shipyard.gateway.api.admin import route_public

    snap = ctx.platform.gateway.snapshot
    with ctx.platform.db.transaction() as s:
        provider_names = [p.name for p in admin.list_providers(s, workspace_id=ctx.workspace_id)]
    rows = [route_public(ctx, r) for r in snap.visible_routes(ctx.workspace_id)]
    return render(
        ctx,
        "gateway_routes.html",
        "gateway_routes",
        routes=rows,
        providers=provider_names,
        error=error,
    )


@router.post("/routes", name="ui.gateway_routes_create")
async def routes_create(
    name: str = Form(max_length=128),
    provider: str = Form(max_length=64),
    model: str = Form(max_length=200),
    kind: str = Form(default="chat", max_length=16),
    ctx: Ctx = Authorized("gateway:manage"),
) -> Response:
    def work() -> None:
        body = RouteIn(
            name=name,
            kind=kind,
            deployments=[{"provider": provider, "model": model}],
        )
        with ctx.tx(target=f"route:{name}") as tx:
            admin.put_route(tx.session, workspace_id=ctx.workspace_id, body=body)

    error = await _attempt_and_reload(ctx, work)
    return await run_in_threadpool(_routes, ctx, error)


@router.get("/keys", name="ui.gateway_keys")
async def keys(ctx: Ctx = Authorized("gateway:read")) -> Response:
    return await _keys(ctx, None)


async def _keys(ctx: Ctx, error: str | None) -> Response:
    def load() -> list[Any]:
        with ctx.platform.db.transaction() as s:
            return identity.list_keys(s, workspace_id=ctx.workspace_id)

    rows = await run_in_threadpool(load)
    snap = ctx.platform.gateway.snapshot
    ledgers: dict[str, dict[str, float]] = {}  # period -> key id -> spent (the ledger)
    items = []
    for k in rows:
        lim = snap.limits.get(f"key:{k.id}")
        spent = None
        if lim and lim.budget_usd:
            if lim.budget_period not in ledgers:
                by_key: dict[str, float] = {}
                for _, key_id, _, usd in await ctx.platform.gateway.ledger(lim.budget_period):
                    by_key[key_id] = by_key.get(key_id, 0.0) + usd
                ledgers[lim.budget_period] = by_key
            spent = ledgers[lim.budget_period].get(k.id, 0.0)
        pct = (
            min(100.0, 100 * spent / lim.budget_usd)
            if lim and lim.budget_usd and spent is not None
            else None
        )
        items.append({"key": k, "limits": lim, "spent": spent, "pct": pct})
    return await run_in_threadpool(
        render, ctx, "gateway_keys.html", "gateway_keys", items=items, error=error
    )


@router.post("/keys/{key_id}/limits", name="ui.gateway_keys_limits")
async def keys_limits(
    key_id: str,
    rpm: str = Form(default="", max_length=12),
    tpm: str = Form(default="", max_length=12),
    budget_usd: str = Form(default="", max_length=16),
    budget_period: str = Form(default="month", max_length=8),
    ctx: Ctx = Authorized("gateway:manage"),
) -> Response:
    def work() -> None:
        current = ctx.platform.gateway.snapshot.limits.get(f"key:{key_id}")
        body = LimitsIn(  # the form edits these four; keep the key's other limits
            rpm=rpm or None,
            tpm=tpm or None,
            budget_usd=budget_usd or None,
            budget_period=budget_period,
            max_tokens=current.max_tokens if current else None,
            allowed_routes=list(current.allowed_routes)
            if current and current.allowed_routes is not None
            else None,
        )
        with ctx.tx(target=f"limits:key:{key_id}") as tx:
            scope = admin.scope_for(
                tx.session, workspace_id=ctx.workspace_id, kind="key", ref=key_id
            )
            admin.set_limits(tx.session, workspace_id=ctx.workspace_id, scope=scope, body=body)

    error = await _attempt_and_reload(ctx, work)
    return await _keys(ctx, error)


@router.get("/requests", name="ui.gateway_requests")
async def requests_page(
    route: str = "", errors: str = "", ctx: Ctx = Authorized("gateway:read")
) -> Response:
    def load() -> list[Any]:
        return ctx.platform.gateway.records.store.search(  # type: ignore[no-any-return]  # Platform services are Any
            workspace_id=ctx.workspace_id,
            route=route[:128] or None,
            errors_only=errors == "1",
            limit=200,
        )

    rows = await run_in_threadpool(load)
    return await run_in_threadpool(
        render,
        ctx,
        "gateway_requests.html",
        "gateway_requests",
        rows=rows,
        route=route,
        errors=errors == "1",
    )
