"""Web UI pages of alerts and drift under /traces: the alert rules (a form to create
one; per rule edit, enable or disable, silence for an hour, a test notification,
delete), the
history of firings and tests, and drift per route (PSI per feature as a bar chart, the
embedding centroid distance when asked for).

A form's input goes through the JSON API's input model (`AlertRuleIn`) and the service
functions of `shipyard.tracing.alerts`; each change is audited as the API's are, and bad
input is a message on the page naming the field (audited as a failed attempt). Rule
names, routes and webhook URLs are user input: the templates escape all of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import InvalidInput, ShipyardError, Unavailable
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.store import utcnow
from shipyard.tracing import alerts
from shipyard.tracing.api import alerts as api
from shipyard.tracing.drift import DriftReport
from shipyard.tracing.spans import MetricsQuery
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/traces")

T = TypeVar("T")
HISTORY_PAGE = 100
DRIFT_RANGES = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
ROUTES_SEEN_NS = 7 * 86400 * 1_000_000_000  # routes offered on the drift page: a week's
SILENCE_HOURS = 1


def _attempt(ctx: Ctx, work: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a form's change (blocking); on bad input, the message to show (audited)."""
    try:
        return work(), None
    except ValidationError as exc:
        err = invalid(exc)
        _audit_ui_failure(ctx, err)
        return None, err.detail
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        return None, exc.detail


# the rules ---------------------------------------------------------------------------


def rule_body(form: dict[str, str], *, allow_internal: bool) -> api.AlertRuleIn:
    """The API's input model from the form's fields (every one a string; an empty one
    takes the model's default). Raises ValidationError naming the fields."""
    fields = {k: v.strip() for k, v in form.items() if k not in ("url", "format")}
    body: dict[str, Any] = {k: v for k, v in fields.items() if v}
    body["targets"] = [{"url": form.get("url", "").strip(), "format": form.get("format") or "json"}]
    body["allow_internal"] = allow_internal
    return api.AlertRuleIn.model_validate(body)


def _rules_page(
    ctx: Ctx,
    status: int = 200,
    *,
    error: str | None = None,
    message: str | None = None,
    created: tuple[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    with ctx.platform.db.transaction() as s:
        rules = [api.public(r) for r in alerts.list_rules(s, workspace_id=ctx.workspace_id)]
    return render(
        ctx,
        "traces_alerts.html",
        "trace_alerts",
        status,
        rules=rules,
        now=utcnow(),
        metrics=alerts.metric_names(ctx.platform),
        comparators=alerts.COMPARATORS,
        error=error,
        message=message,
        created=created,
        form=form or {},
        silence_hours=SILENCE_HOURS,
    )


async def _after(
    ctx: Ctx,
    error: str | None,
    message: str | None = None,
    created: tuple[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    # 200 with the message: HTMX swaps in only successful responses
    return await run_in_threadpool(
        lambda: _rules_page(ctx, error=error, message=message, created=created, form=form)
    )


@router.get("/alerts", name="ui.trace_alerts")
async def rules_page(ctx: Ctx = Authorized("traces:read")) -> Response:
    return await run_in_threadpool(_rules_page, ctx)


def rule_form(
    name: str = Form("", max_length=400),
    metric: str = Form("", max_length=64),
    route: str = Form("", max_length=400),
    model: str = Form("", max_length=400),
    key_id: str = Form("", max_length=400),
    window_seconds: str = Form("", max_length=32),
    comparator: str = Form("", max_length=8),
    threshold: str = Form("", max_length=64),
    for_seconds: str = Form("", max_length=32),
    url: str = Form("", max_length=2000),
    target_format: str = Form("json", alias="format", max_length=8),
) -> dict[str, str]:
    """A rule form's fields, as typed (bounded in size; checked by `rule_body`)."""
    return {
        "name": name,
        "metric": metric,
        "route": route,
        "model": model,
        "key_id": key_id,
        "window_seconds": window_seconds,
        "comparator": comparator,
        "threshold": threshold,
        "for_seconds": for_seconds,
        "url": url,
        "format": target_format,
    }


@router.post("/alerts", name="ui.trace_alerts_create")
async def create_rule(
    form: dict[str, str] = Depends(rule_form),
    allow_internal: bool = Form(False),
    ctx: Ctx = Authorized("tracing:manage"),
) -> Response:

    def work() -> tuple[str, str]:
        body = rule_body(form, allow_internal=allow_internal)
        with ctx.tx(target=f"alert:{body.name}") as tx:
            row, secret = api.create(ctx, tx, body)
            return row.name, secret

    created, error = await run_in_threadpool(_attempt, ctx, work)
    # a failed form keeps what was typed; a created rule clears it
    return await _after(ctx, error, created=created, form=form if error else None)


@router.post("/alerts/{rule_id}/edit", name="ui.trace_alerts_edit")
async def edit_rule(
    rule_id: str,
    form: dict[str, str] = Depends(rule_form),
    allow_internal: bool = Form(False),
    ctx: Ctx = Authorized("tracing:manage"),
) -> Response:
    """Replace a rule's definition from its edit form (its secret, history and enabled
    flag stay; its state starts over), as the API's PUT does."""

    def work() -> str:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            current = alerts.get_rule(tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id)
            body = rule_body(form, allow_internal=allow_internal)
            body = body.model_copy(update={"enabled": current.enabled})
            row = api.replace(ctx, tx, rule_id, body)
            return f"Rule {row.name} saved."

    message, error = await run_in_threadpool(_attempt, ctx, work)
    return await _after(ctx, error, message)


@router.post("/alerts/{rule_id}/enabled", name="ui.trace_alerts_enable")
async def enable_rule(
    rule_id: str,
    enabled: bool = Form(),
    ctx: Ctx = Authorized("tracing:manage"),
) -> Response:
    def work() -> str:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            current = api.public(
                alerts.get_rule(tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id)
            )
            fields = set(api.AlertRuleIn.model_fields) - {"enabled"}
            body = api.AlertRuleIn.model_validate(
                {**current.model_dump(include=fields), "enabled": enabled}
            )
            row = api.replace(ctx, tx, rule_id, body)
            return f"Rule {row.name} {'enabled' if enabled else 'disabled'}."

    message, error = await run_in_threadpool(_attempt, ctx, work)
    return await _after(ctx, error, message)


@router.post("/alerts/{rule_id}/silence", name="ui.trace_alerts_silence")
async def silence_rule(
    rule_id: str,
    hours: str = Form(str(SILENCE_HOURS), max_length=8),
    ctx: Ctx = Authorized("tracing:manage"),
) -> Response:
    def work() -> str:
        if not hours.strip().isdigit() or not 0 <= int(hours) <= 7 * 24:
            raise InvalidInput("hours: a whole number of hours, 0 to 168", param="hours")
        until = utcnow() + timedelta(hours=int(hours)) if int(hours) else None
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            row = alerts.silence(
                tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id, until=until
            )
            tx.detail = f"silenced_until={until.isoformat() if until else 'none'}"
            if until is None:
                return f"Rule {row.name} is no longer silenced."
            return f"Rule {row.name} silenced until {until.strftime('%Y-%m-%d %H:%M')} UTC."

    message, error = await run_in_threadpool(_attempt, ctx, work)
    return await _after(ctx, error, message)


@router.post("/alerts/{rule_id}/test", name="ui.trace_alerts_test")
async def test_rule(rule_id: str, ctx: Ctx = Authorized("tracing:manage")) -> Response:
    try:
        event = await api.engine(ctx).test(rule_id, ctx.workspace_id)
    except ShipyardError as exc:
        await run_in_threadpool(_audit_ui_failure, ctx, exc)
        return await _after(ctx, exc.detail)

    def audit() -> None:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            tx.detail = f"test delivery={event.delivery_status}"

    await run_in_threadpool(audit)
    tries = "attempt" if event.attempts == 1 else "attempts"
    message = f"Test notification: {event.delivery_status} ({event.attempts} {tries})."
    return await _after(ctx, None, message)


@router.post("/alerts/{rule_id}/delete", name="ui.trace_alerts_delete")
async def delete_rule(rule_id: str, ctx: Ctx = Authorized("tracing:manage")) -> Response:
    def work() -> str:
        with ctx.tx(target=f"alert:{rule_id}") as tx:
            row = alerts.delete_rule(tx.session, workspace_id=ctx.workspace_id, rule_id=rule_id)
            tx.detail = f"name={row.name}"
            return f"Rule {row.name} deleted, with its history."

    message, error = await run_in_threadpool(_attempt, ctx, work)
    return await _after(ctx, error, message)


# the history -------------------------------------------------------------------------


@router.get("/alerts/history", name="ui.trace_alerts_history")
async def history_page(
    rule: str = "", before: str = "", ctx: Ctx = Authorized("traces:read")
) -> Response:
    error, code = None, 200
    at = None
    if before:
        try:
            at = datetime.fromisoformat(before.strip()[:64])
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
        except ValueError:
            error, code = "before: a date and time, e.g. 2026-01-31T12:00:00+00:00", 400

    def load() -> tuple[list[api.AlertEventPublic], dict[str, str]]:
        with ctx.platform.db.transaction() as s:
            names = {r.id: r.name for r in alerts.list_rules(s, workspace_id=ctx.workspace_id)}
            if error:
                return [], names
            rows = alerts.history(
                s,
                workspace_id=ctx.workspace_id,
                rule_id=rule[:64] or None,
                before=at,
                limit=HISTORY_PAGE,
            )
            return [api.event_public(r) for r in rows], names

    events, names = await run_in_threadpool(load)
    older = None
    if len(events) == HISTORY_PAGE:
        kept = {"rule": rule[:64]} if rule else {}
        older = "/traces/alerts/history?" + urlencode(
            {**kept, "before": events[-1].fired_at.isoformat()}
        )
    return await run_in_threadpool(
        render,
        ctx,
        "traces_alert_history.html",
        "trace_alert_history",
        code,
        events=events,
        names=names,
        rule=rule[:64],
        older=older,
        error=error,
    )


# drift -------------------------------------------------------------------------------

PSI_FEATURES = (
    ("input_length_psi", "Input length"),
    ("output_length_psi", "Output length"),
    ("latency_psi", "Latency"),
    ("score_psi", "Score"),
)
BAR_W, BAR_H, LABEL_W, VALUE_W = 560, 26, 110, 60
PSI_TOP = 1.0  # the right end of the scale at most


@dataclass
class Bar:
    label: str
    value: float | None
    level: str  # stable, moderate, shift, none
    width: float  # px of the bar
    y: float


@dataclass
class BarChart:
    bars: list[Bar]
    top: float  # the value at the right end
    marks: list[tuple[float, str]]  # x, label of the 0.1 and 0.25 lines
    width: int
    height: int
    label_w: int = LABEL_W


def level(value: float | None) -> str:
    """How a PSI reads: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift."""
    if value is None:
        return "none"
    return "stable" if value < 0.1 else "moderate" if value <= 0.25 else "shift"


def psi_chart(report: DriftReport) -> BarChart:
    """A horizontal bar per feature, on a scale from 0 to between 0.3 and `PSI_TOP` that
    keeps the 0.1 and 0.25 marks apart; a larger PSI (a shift either way) fills its bar
    and is written beside it."""
    values = [(label, getattr(report, attr)) for attr, label in PSI_FEATURES]
    top = min(PSI_TOP, max([0.3, *(v * 1.1 for _, v in values if v is not None)]))
    span = BAR_W - LABEL_W - VALUE_W
    bars = [
        Bar(
            label,
            v,
            level(v),
            0.0 if v is None else max(1.0, span * min(v, top) / top),
            8 + i * BAR_H,
        )
        for i, (label, v) in enumerate(values)
    ]
    marks = [(LABEL_W + span * m / top, f"{m:g}") for m in (0.1, 0.25)]
    return BarChart(bars, top, marks, BAR_W, 8 + len(bars) * BAR_H + 16)


def _instant(value: str, param: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{param}: a date and time, e.g. 2026-01-31T12:00", param=param
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def drift_windows(f: dict[str, str]) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The reference and current windows from the form: the current one is the last
    `range` unless given, the reference the same length just before it unless given.
    Raises InvalidInput naming the field."""
    if f["range"] not in DRIFT_RANGES:
        raise InvalidInput(f"range: one of {', '.join(DRIFT_RANGES)}", param="range")
    names = ("reference_since", "reference_until", "current_since", "current_until")
    given = {k: _instant(f[k], k) for k in names if f[k]}
    length = timedelta(seconds=DRIFT_RANGES[f["range"]])
    cur_until = given.get("current_until") or utcnow().replace(microsecond=0)
    cur_since = given.get("current_since") or cur_until - length
    if cur_since >= cur_until:
        raise InvalidInput("current_since: must be before current_until", param="current_since")
    ref_until = given.get("reference_until") or cur_since
    ref_since = given.get("reference_since") or ref_until - (cur_until - cur_since)
    return (ref_since, ref_until), (cur_since, cur_until)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


def _routes_seen(ctx: Ctx) -> list[str]:
    """The routes with model calls in the last week (from the roll-ups: cheap)."""
    store = ctx.platform.tracing.store
    if store is None:
        return []
    until = time.time_ns()
    query = MetricsQuery(
        since_ns=until - ROUTES_SEEN_NS,
        until_ns=until,
        bucket_seconds=7 * 86400,
        group_by=("route",),
    )
    points = store.metrics(ctx.workspace_id, query)
    return sorted({r for p in points if (r := p.group.get("route"))})


@router.get("/drift", name="ui.trace_drift")
async def drift_page(
    route: str = "",
    window: str = Query("1h", alias="range"),
    reference_since: str = "",
    reference_until: str = "",
    current_since: str = "",
    current_until: str = "",
    score_attribute: str = "",
    embeddings: str = "",
    ctx: Ctx = Authorized("traces:read"),
) -> Response:
    f = {
        "route": route.strip(),
        "range": window.strip() or "1h",
        "reference_since": reference_since.strip()[:64],
        "reference_until": reference_until.strip()[:64],
        "current_since": current_since.strip()[:64],
        "current_until": current_until.strip()[:64],
        "score_attribute": score_attribute.strip(),
        "embeddings": "1" if embeddings else "",
    }
    error, code, report, windows = None, 200, None, None
    if f["route"]:
        try:
            for param in ("route", "score_attribute"):
                if len(f[param]) > 200:
                    raise InvalidInput(f"{param}: at most 200 characters", param=param)
            windows = drift_windows(f)
            if ctx.platform.tracing.store is None:
                raise Unavailable("the trace store is starting", retry_after=1)
            (ref_since, ref_until), (cur_since, cur_until) = windows
            # embedding loads the local model (seconds, once): only when asked for, and
            # the report embeds only when both windows have inputs
            report = await api.engine(ctx).drift.areport(
                ctx.workspace_id,
                f["route"],
                (_ns(ref_since), _ns(ref_until)),
                (_ns(cur_since), _ns(cur_until)),
                embeddings=bool(f["embeddings"]),
                score_attribute=f["score_attribute"] or None,
            )
        except ShipyardError as exc:
            error, code, report = exc.detail, exc.status, None
    routes = await run_in_threadpool(_routes_seen, ctx)
    return await run_in_threadpool(
        render,
        ctx,
        "traces_drift.html",
        "trace_drift",
        code,
        f=f,
        ranges=list(DRIFT_RANGES),
        routes=routes,
        report=report,
        windows=windows,
        chart=psi_chart(report) if report else None,
        error=error,
    )
