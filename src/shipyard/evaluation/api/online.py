"""Online evaluation rules under /api/evals/online: scorers applied on a schedule to a
sample of live traces, their scores written as feedback on the traces. Thin routes over
`shipyard.evaluation.online`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import select

from shipyard.errors import Unavailable
from shipyard.evaluation import online
from shipyard.evaluation.online import OnlineRuleIn, OnlineRuleUpdate
from shipyard.evaluation.runs import checked_scorers
from shipyard.evaluation.tables import OnlineRuleRow
from shipyard.http.deps import Authorized, Ctx

router = APIRouter(prefix="/api/evals/online", tags=["evaluation"])


class OnlineRulePublic(BaseModel):
    id: str
    name: str
    route: str
    sample_rate: float
    scorers: list[dict[str, Any]]
    filters: dict[str, Any]
    interval_s: int
    enabled: bool
    scored: int
    watermark: datetime | None
    last_run_at: datetime | None
    last_error: str
    created_by: str
    created_at: datetime


class RunNow(BaseModel):
    scored: int


def public(row: OnlineRuleRow) -> OnlineRulePublic:
    return OnlineRulePublic(
        id=row.id,
        name=row.name,
        route=row.route,
        sample_rate=row.sample_rate,
        scorers=row.scorers,
        filters=row.filters or {},
        interval_s=row.interval_s,
        enabled=row.enabled,
        scored=row.scored,
        watermark=datetime.fromtimestamp(row.watermark_ns / 1e9, UTC) if row.watermark_ns else None,
        last_run_at=row.last_run_at,
        last_error=row.last_error,
        created_by=row.created_by,
        created_at=row.created_at,
    )


@router.post("", status_code=201, name="evals.online.create")
def create_rule(body: OnlineRuleIn, ctx: Ctx = Authorized("evals:manage")) -> OnlineRulePublic:
    """Traces that start from now on are sampled; judges call the gateway as you."""
    with ctx.tx(target=f"online_rule:{body.name}") as tx:
        row = online.create(
            tx.session,
            plugins=ctx.platform.plugins,
            actor=ctx.actor,
            body=body,
            now_ns=time.time_ns(),
        )
        return public(row)


@router.get("", name="evals.online.list")
def list_rules(ctx: Ctx = Authorized("evals:read")) -> list[OnlineRulePublic]:
    with ctx.tx() as tx:
        rows = tx.session.scalars(
            select(OnlineRuleRow)
            .where(OnlineRuleRow.workspace_id == ctx.workspace_id)
            .order_by(OnlineRuleRow.name)
        ).all()
        return [public(r) for r in rows]


@router.get("/{name}", name="evals.online.get")
def get_rule(name: str, ctx: Ctx = Authorized("evals:read")) -> OnlineRulePublic:
    with ctx.tx() as tx:
        return public(online.get(tx.session, ctx.workspace_id, name))


@router.patch("/{name}", name="evals.online.update")
def update_rule(
    name: str, body: OnlineRuleUpdate, ctx: Ctx = Authorized("evals:manage")
) -> OnlineRulePublic:
    with ctx.tx(target=f"online_rule:{name[:64]}") as tx:
        row = online.get(tx.session, ctx.workspace_id, name)
        if body.sample_rate is not None:
            row.sample_rate = body.sample_rate
        if body.interval_s is not None:
            row.interval_s = body.interval_s
        if body.enabled is not None:
            row.enabled = body.enabled
        if body.scorers is not None:
            row.scorers = checked_scorers(ctx.platform.plugins, body.scorers)
        return public(row)


@router.delete("/{name}", status_code=204, name="evals.online.delete")
def delete_rule(name: str, ctx: Ctx = Authorized("evals:manage")) -> Response:
    with ctx.tx(target=f"online_rule:{name[:64]}") as tx:
        tx.session.delete(online.get(tx.session, ctx.workspace_id, name))
    return Response(status_code=204)


@router.post("/{name}/run", name="evals.online.run")
async def run_rule(name: str, ctx: Ctx = Authorized("evals:manage")) -> RunNow:
    """Score the traces since the last window now (up to this moment)."""

    def find() -> str:
        with ctx.tx() as tx:
            return online.get(tx.session, ctx.workspace_id, name).id

    rule_id = await anyio.to_thread.run_sync(find)
    service = ctx.platform.services.get("evaluation")
    if service is None:
        raise Unavailable("evaluation is starting", retry_after=1)
    return RunNow(scored=await service.online.run_rule(rule_id, until_ns=time.time_ns()))
