"""Alert rules under /api/tracing/alerts: CRUD, silencing, a test notification, the
history. Thin routes over `shipyard.tracing.alerts`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from shipyard.errors import Unavailable
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict, Timestamp
from shipyard.tracing import alerts
from shipyard.tracing.alert_tables import AlertEventRow, AlertRuleRow

router = APIRouter(prefix="/api/tracing/alerts", tags=["tracing"])

# one of `alerts.METRICS`, or a metric another capability offers (feedback scores):
# checked against the platform's list when the rule is created
Metric = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="a trace store metric (" + ", ".join(alerts.METRICS) + ") or another"
        " capability's (feedback_score_mean, feedback_thumbs_up_rate, ...)",
    ),
]
Comparator = Literal[">", ">=", "<", "<="]
Name = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]*$")
]
Filter = Annotated[str, Field(min_length=1, max_length=200)]


class TargetIn(Strict):
    url: str = Field(min_length=1, max_length=2000)
    format: Literal["json", "slack"] = "json"


class AlertRuleIn(Strict):
    """A whole rule (PUT replaces it; an omitted field takes its default)."""

    name: Name
    metric: Metric
    route: Filter | None = None
    model: Filter | None = None
    key_id: Filter | None = None
    window_seconds: int = Field(default=300, ge=60, le=7 * 86400)
    comparator: Comparator
    threshold: float = Field(allow_inf_nan=False)
    for_seconds: int = Field(default=0, ge=0, le=86400)
    enabled: bool = True
    targets: list[TargetIn] = Field(min_length=1, max_length=alerts.MAX_TARGETS)
    allow_internal: bool = False

    @model_validator(mode="after")
    def _drift_needs_route(self) -> AlertRuleIn:
        if self.metric.startswith("drift_") and not self.route:
            raise ValueError("route: a drift metric is computed per route; name one")
        return self

    def rule(self) -> alerts.RuleIn:
        return alerts.RuleIn(
            name=self.name,
            metric=self.metric,
            window_seconds=self.window_seconds,
            comparator=self.comparator,
            threshold=self.threshold,
            targets=[alerts.Target(url=t.url, format=t.format) for t in self.targets],
            for_seconds=self.for_seconds,
            route=self.route,
            model=self.model,
            key_id=self.key_id,
            enabled=self.enabled,
            allow_internal=self.allow_internal,
        )


class SilenceIn(Strict):
    until: Timestamp | None  # null: no longer silenced


class TargetPublic(BaseModel):
    url: str
    format: str


class AlertRulePublic(BaseModel):
    id: str
    name: str
    metric: str
    route: str | None
    model: str | None
    key_id: str | None
    window_seconds: int
    comparator: str
    threshold: float
    for_seconds: int
    enabled: bool
    targets: list[TargetPublic]
    allow_internal: bool
    silenced_until: datetime | None
    state: str  # ok, pending, firing
    last_value: float | None
    evaluated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AlertRuleCreated(AlertRulePublic):
    secret: str  # signs the webhook bodies; shown only here


class AlertEventPublic(BaseModel):
    id: str
    rule_id: str
    kind: str  # alert or test
    fired_at: datetime
    resolved_at: datetime | None
    value: float | None
    resolved_value: float | None
    threshold: float
    silenced: bool
    delivery_status: str  # pending, delivered, failed, silenced
    attempts: int
    deliveries: list[dict[str, Any]]


def public(row: AlertRuleRow) -> AlertRulePublic:
    return AlertRulePublic(
        id=row.id,
        name=row.name,
        metric=row.metric,
        route=row.route,
        model=row.model,
        key_id=row.key_id,
        window_seconds=row.window_seconds,
        comparator=row.comparator,
        threshold=row.threshold,
        for_seconds=row.for_seconds,
        enabled=row.enabled,
        targets=[TargetPublic(**t) for t in row.targets],
        allow_internal=row.allow_internal,
        silenced_until=row.silenced_until,
        state=row.state,
        last_value=row.last_value,
        evaluated_at=row.evaluated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def event_public(row: AlertEventRow) -> AlertEventPublic:
    return AlertEventPublic(
        id=row.id,
        rule_id=row.rule_id,
        kind=row.kind,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        value=row.value,
        resolved_value=row.resolved_value,
        threshold=row.threshold,
        silenced=row.silenced,
        delivery_status=row.delivery_status,
        attempts=row.attempts,
        deliveries=list(row.deliveries or []),
    )


def engine(ctx: Ctx) -> alerts.AlertEngine:
    """The running alert engine (503 while it starts)."""
    service = ctx.platform.services.get("tracing")
    found = getattr(service, "alerts", None)
    if found is None:
        raise Unavailable("alert evaluation is starting", retry_after=1)
    return found  # type: ignore[no-any-return]  # Tracing.alerts is an AlertEngine


def _platform(ctx: Ctx) -> bool:
    return ctx.actor.can("tracing:internal")


def create(ctx: Ctx, tx: Any, body: AlertRuleIn) -> tuple[AlertRuleRow, str]:
    """Create a rule in `tx` (audited as the new rule); the row and its secret. The API
    and the UI's form both create through this."""
    row, secret = alerts.create_rule(
        tx.session,
        box=ctx.platform.box,
        workspace_id=ctx.workspace_id,
        body=body.rule(),
        platform=_platform(ctx),
        known=alerts.metric_names(ctx.platform),
    )
    tx.target = f"alert:{row.id}"
    tx.detail = detail(row)
    return row, secret


def replace(ctx: Ctx, tx: Any, rule_id: str, body: AlertRuleIn) -> AlertRuleRow:
    """Replace a rule's definition in `tx` (audited with the new one); the row."""
    row = alerts.update_rule(
        tx.session,
        workspace_id=ctx.workspace_id,
        rule_id=rule_id,
        body=body.rule(),
        platform=_platform(ctx),
        known=alerts.metric_names(ctx.platform),
    )
    tx.detail = detail(row)
    return row


@router.get("", name="tracing.alerts.list")
def list_rules(ctx: Ctx = Authorized("traces:read")) -> list[AlertRulePublic]:
    with ctx.tx() as tx:
        return [public(r) for r in alerts.list_rules(tx.session, workspace_id=ctx.workspace_id)]


@router.post("", status_code=201, name="tracing.alerts.create")
async def create_rule(
    body: AlertRuleIn, ctx: Ctx = Authorized("tracing:manage")
) -> AlertRuleCreated:
    def work() -> AlertRuleCreated:
        with ctx.tx(target=f"alert:{body.name}") as tx:
            row, secret = create(ctx, tx, body)
            return AlertRuleCreated(**public(row).model_dump(), secret=secret)

    return await run_in_threadpool(work)


@router.get("/history", name="tracing.alerts.history")
def list_history(
    ctx: Ctx = Authorized("traces:read"),
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertEventPublic]:
    with ctx.tx() as tx:
        rows = alerts.history(
            tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id, before=before, limit=limit
        )
        return [event_public(r) for r in rows]


@router.get("/{rule_id}", name="tracing.alerts.get")
def get_rule(rule_id: str, ctx: Ctx = Authorized("traces:read")) -> AlertRulePublic:
    with ctx.tx() as tx:
        return public(alerts.get_rule(tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id))


@router.put("/{rule_id}", name="tracing.alerts.put")
async def put_rule(
    rule_id: str, body: AlertRuleIn, ctx: Ctx = Authorized("tracing:manage")
) -> AlertRulePublic:
    def work() -> AlertRulePublic:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            return public(replace(ctx, tx, rule_id, body))

    return await run_in_threadpool(work)


@router.delete("/{rule_id}", status_code=204, name="tracing.alerts.delete")
async def delete_rule(rule_id: str, ctx: Ctx = Authorized("tracing:manage")) -> Response:
    def work() -> None:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            row = alerts.delete_rule(tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id)
            tx.detail = f"name={row.name}"

    await run_in_threadpool(work)
    return Response(status_code=204)


@router.post("/{rule_id}/silence", name="tracing.alerts.silence")
async def silence_rule(
    rule_id: str, body: SilenceIn, ctx: Ctx = Authorized("tracing:manage")
) -> AlertRulePublic:
    def work() -> AlertRulePublic:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            row = alerts.silence(
                tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id, until=body.until
            )
            tx.detail = f"silenced_until={body.until.isoformat() if body.until else 'none'}"
            return public(row)

    return await run_in_threadpool(work)


@router.post("/{rule_id}/secret", name="tracing.alerts.secret")
async def rotate_secret(rule_id: str, ctx: Ctx = Authorized("tracing:manage")) -> AlertRuleCreated:
    def work() -> AlertRuleCreated:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            row, secret = alerts.rotate_secret(
                tx.session, box=ctx.platform.box, workspace_id=ctx.workspace_id, rule_id=rule_id
            )
            tx.detail = "secret rotated"
            return AlertRuleCreated(**public(row).model_dump(), secret=secret)

    return await run_in_threadpool(work)


@router.post("/{rule_id}/test", name="tracing.alerts.test")
async def test_rule(rule_id: str, ctx: Ctx = Authorized("tracing:manage")) -> AlertEventPublic:
    event = await engine(ctx).test(rule_id, ctx.workspace_id)

    def audit() -> None:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            tx.detail = f"test delivery={event.delivery_status}"

    await run_in_threadpool(audit)
    return event_public(event)


def detail(row: AlertRuleRow) -> str:
    where = " ".join(f"{k}={v}" for k in ("route", "model", "key_id") if (v := getattr(row, k)))
    return (
        f"name={row.name} metric={row.metric} {row.comparator} {row.threshold:g} "
        f"window={row.window_seconds}s for={row.for_seconds}s enabled={row.enabled} "
        f"targets={len(row.targets)} allow_internal={row.allow_internal}"
        + (f" {where}" if where else "")
    )
