"""`/api/serving/canaries`: start a canary of a registered model version on a route,
list and read them (with the latest judgement's figures), judge one now, stop one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import select

from shipyard.http.deps import Authorized, Ctx
from shipyard.serving.canary import Canaries, CanaryIn
from shipyard.serving.tables import CanaryRow

router = APIRouter(prefix="/api/serving/canaries", tags=["serving"])


class CanaryPublic(BaseModel):
    id: str
    route: str
    model: str
    stable_alias: str
    stable_version: int
    canary_version: int
    percent: float
    metric: str
    margin: float
    min_samples: int
    promote_after_seconds: float
    status: str
    decision: dict[str, Any] | None
    created_by: str
    started_at: datetime
    ended_at: datetime | None


def public(row: CanaryRow) -> CanaryPublic:
    return CanaryPublic(
        id=row.id, route=row.route, model=row.model, stable_alias=row.stable_alias,
        stable_version=row.stable_version, canary_version=row.canary_version,
        percent=row.percent, metric=row.metric, margin=row.margin, min_samples=row.min_samples,
        promote_after_seconds=row.promote_after_s, status=row.status, decision=row.decision,
        created_by=row.created_by, started_at=row.started_at, ended_at=row.ended_at,
    )  # fmt: skip


def _service(ctx: Ctx) -> Canaries:
    found: Canaries = ctx.platform.services["serving"]
    return found


@router.post("", status_code=201, name="serving.canaries.create")
async def create(body: CanaryIn, ctx: Ctx = Authorized("serving:manage")) -> CanaryPublic:
    """Split the route between the stable alias and the new version (as `canary`)."""

    def work() -> CanaryPublic:
        with ctx.tx(target=f"route:{body.route}") as tx:
            return public(_service(ctx).create(tx.session, ctx.actor, body))

    out = await run_in_threadpool(work)
    await ctx.platform.gateway.reload()
    return out


@router.get("", name="serving.canaries.list")
def listing(ctx: Ctx = Authorized("serving:read")) -> list[CanaryPublic]:
    with ctx.tx() as tx:
        rows = tx.session.scalars(
            select(CanaryRow)
            .where(CanaryRow.workspace_id == ctx.workspace_id)
            .order_by(CanaryRow.started_at.desc())
            .limit(500)
        ).all()
        return [public(r) for r in rows]


@router.get("/{canary_id}", name="serving.canaries.get")
def get(canary_id: str, ctx: Ctx = Authorized("serving:read")) -> CanaryPublic:
    with ctx.tx() as tx:
        return public(Canaries.get(tx.session, ctx.workspace_id, canary_id))


@router.post("/{canary_id}/judge", name="serving.canaries.judge")
async def judge(canary_id: str, ctx: Ctx = Authorized("serving:manage")) -> CanaryPublic:
    """Judge it now rather than at the next tick (rolled back or promoted if due)."""

    def check() -> str:
        with ctx.tx() as tx:
            return Canaries.get(tx.session, ctx.workspace_id, canary_id).id

    found = await run_in_threadpool(check)
    return public(await _service(ctx).judge_now(found))


@router.post("/{canary_id}/stop", name="serving.canaries.stop")
async def stop(canary_id: str, ctx: Ctx = Authorized("serving:manage")) -> CanaryPublic:
    """End it by hand: the route's target before the canary is restored."""

    def work() -> CanaryPublic:
        with ctx.tx(target=f"canary:{canary_id[:64]}") as tx:
            return public(_service(ctx).stop_now(tx.session, ctx.actor, canary_id))

    out = await run_in_threadpool(work)
    await ctx.platform.gateway.reload()
    return out
