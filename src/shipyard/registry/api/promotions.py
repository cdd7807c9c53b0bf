"""Promotions under /api/registry/promotions (request, approve, reject, cancel) and the
environments' policies under /api/registry/policies. Thin routes over
`shipyard.registry.promotion`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, PermissionDenied
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity import service as identity
from shipyard.plugins import Gate
from shipyard.registry import assets, promotion
from shipyard.registry.api import change
from shipyard.registry.api.assets import who
from shipyard.registry.schemas import (
    DecisionIn,
    PolicyIn,
    PolicyPublic,
    PromotionIn,
    PromotionPublic,
)
from shipyard.registry.tables import AssetRow, PromotionRow

router = APIRouter(prefix="/api/registry", tags=["registry"])
State = Literal["pending", "approved", "rejected", "cancelled"]
Environment = Annotated[str, Path(pattern=assets.ALIAS)]


def public(s: Session, row: PromotionRow) -> PromotionPublic:
    asset = s.get(AssetRow, row.asset_id)
    assert asset is not None
    return PromotionPublic(
        id=row.id,
        kind=asset.kind,
        name=asset.name,
        version=row.version,
        environment=row.environment,
        state=row.state,
        gates=list(row.gates or []),
        note=row.note,
        requested_by=row.requested_label or row.requested_by,
        decided_by=row.decided_by,
        decision_note=row.decision_note,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


def _gates(ctx: Ctx) -> dict[str, Gate]:
    return ctx.platform.services["registry"].gates  # type: ignore[no-any-return]  # Registry


def request(
    ctx: Ctx, tx: Any, *, kind: str, name: str, version: int, environment: str, note: str
) -> PromotionRow:
    """A promotion request in `tx` (audited as the route or page that calls it); the API
    and the UI both request through this."""
    asset = assets.get_asset(tx.session, workspace_id=ctx.workspace_id, kind=kind, name=name)
    row = promotion.request(
        tx.session,
        asset,
        number=version,
        environment=environment,
        who=who(ctx),
        note=note,
        known=_gates(ctx),
    )
    tx.detail = f"version {row.version}: {row.state}"
    return row


def decide(ctx: Ctx, tx: Any, promotion_id: str, decision: str, note: str = "") -> PromotionRow:
    """Approve, reject or cancel a pending promotion in `tx`; the API and the UI both
    decide through this. Approving and rejecting need `registry:approve` (checked here
    too: the UI's route takes the lesser permission, for the requester's cancel)."""
    if decision not in ("approve", "reject", "cancel"):
        raise InvalidInput("decision: approve, reject or cancel", param="decision")
    if decision != "cancel" and not ctx.actor.can("registry:approve"):
        raise PermissionDenied(f"to {decision} a promotion needs the registry:approve permission")
    row = promotion.get(tx.session, workspace_id=ctx.workspace_id, promotion_id=promotion_id)
    if decision == "approve":
        promotion.approve(tx.session, row, who=who(ctx), note=note, known=_gates(ctx))
    elif decision == "reject":
        promotion.reject(tx.session, row, who=who(ctx), note=note)
    else:
        promotion.cancel(tx.session, row, who=who(ctx))
    tx.detail = f"{decision}: {row.environment} -> version {row.version}"
    return row


@router.post("/promotions", status_code=201, name="registry.promotions.request")
async def request_promotion(
    body: PromotionIn, ctx: Ctx = Authorized("registry:promote")
) -> PromotionPublic:
    """Ask to point `environment` at a version. The environment's gates run now; where
    it needs no second person the alias moves at once (state `approved`)."""

    def work() -> PromotionPublic:
        with ctx.tx(target=f"{body.kind}:{body.name}@{body.environment}") as tx:
            row = request(
                ctx,
                tx,
                kind=body.kind,
                name=body.name,
                version=body.version,
                environment=body.environment,
                note=body.note,
            )
            return public(tx.session, row)

    return await change(ctx, work)


@router.get("/promotions", name="registry.promotions.list")
def list_promotions(
    ctx: Ctx = Authorized("registry:read"),
    state: Annotated[State | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PromotionPublic]:
    with ctx.tx() as tx:
        rows = promotion.listing(
            tx.session, workspace_id=ctx.workspace_id, state=state, limit=limit
        )
        return [public(tx.session, r) for r in rows]


@router.get("/promotions/{promotion_id}", name="registry.promotions.get")
def get_promotion(promotion_id: str, ctx: Ctx = Authorized("registry:read")) -> PromotionPublic:
    with ctx.tx() as tx:
        row = promotion.get(tx.session, workspace_id=ctx.workspace_id, promotion_id=promotion_id)
        return public(tx.session, row)


async def _decide(ctx: Ctx, promotion_id: str, decision: str, note: str) -> PromotionPublic:
    def work() -> PromotionPublic:
        with ctx.tx(target=f"promotion:{promotion_id}") as tx:
            return public(tx.session, decide(ctx, tx, promotion_id, decision, note))

    return await change(ctx, work)


@router.post("/promotions/{promotion_id}/approve", name="registry.promotions.approve")
async def approve(
    promotion_id: str, body: DecisionIn, ctx: Ctx = Authorized("registry:approve")
) -> PromotionPublic:
    """Four eyes: a user other than the requester; the alias moves now."""
    return await _decide(ctx, promotion_id, "approve", body.note)


@router.post("/promotions/{promotion_id}/reject", name="registry.promotions.reject")
async def reject(
    promotion_id: str, body: DecisionIn, ctx: Ctx = Authorized("registry:approve")
) -> PromotionPublic:
    return await _decide(ctx, promotion_id, "reject", body.note)


@router.post("/promotions/{promotion_id}/cancel", name="registry.promotions.cancel")
async def cancel(promotion_id: str, ctx: Ctx = Authorized("registry:promote")) -> PromotionPublic:
    """The requester withdraws their own request."""
    return await _decide(ctx, promotion_id, "cancel", "")


# Policies --------------------------------------------------------------------------------


@router.get("/policies", name="registry.policies.list")
def list_policies(ctx: Ctx = Authorized("registry:read")) -> list[PolicyPublic]:
    with ctx.tx() as tx:
        found = []
        for env in identity.environments(tx.session, workspace_id=ctx.workspace_id):
            p = promotion.policy(tx.session, workspace_id=ctx.workspace_id, environment=env)
            found.append(PolicyPublic(environment=env, four_eyes=p.four_eyes, gates=p.gates))
        return found


@router.put("/policies/{environment}", name="registry.policies.put")
def put_policy(
    environment: Environment, body: PolicyIn, ctx: Ctx = Authorized("registry:manage")
) -> PolicyPublic:
    """What promoting into `environment` takes: four eyes, and gates with their config
    (`{"required_metadata": ["owner", "eval_run"]}`)."""
    with ctx.tx(target=f"environment:{environment}") as tx:
        p = promotion.set_policy(
            tx.session,
            workspace_id=ctx.workspace_id,
            environment=environment,
            four_eyes=body.four_eyes,
            gates=body.gates,
            known=_gates(ctx),
        )
        tx.detail = f"four_eyes={p.four_eyes}, gates={sorted(p.gates)}"
        return PolicyPublic(environment=environment, four_eyes=p.four_eyes, gates=p.gates)
