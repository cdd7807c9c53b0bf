"""Web UI pages of tracing: the trace list (filters, full-text search, cursor pages), a
trace as a span tree with timing bars, sessions, and the metrics dashboard. They read
the trace store directly (blocking calls in a thread). Everything shown is text the
templates escape: span names, inputs and attributes come from whoever sent the spans."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from shipyard.errors import InvalidInput, NotFound, ShipyardError, Unavailable
from shipyard.http.deps import Authorized, Ctx
from shipyard.plugins import TraceStore
from shipyard.tracing.charts import Chart, line_chart
from shipyard.tracing.spans import MetricPoint, MetricsQuery, Span, TraceQuery, TraceSummary
from shipyard.ui.router import render, templates

router = APIRouter(include_in_schema=False, prefix="/traces")

RANGES = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
BUCKETS = {"15m": 60, "1h": 300, "24h": 3600, "7d": 6 * 3600, "30d": 86400}
SPANS_PAGE = 500
TOP_GROUPS = 8


def _store(ctx: Ctx) -> TraceStore:
    store: TraceStore | None = ctx.platform.tracing.store
    if store is None:
        raise Unavailable("the trace store is starting", retry_after=1)
    return store


def when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fragment(ctx: Ctx, name: str, status: int = 200, **values: Any) -> Response:
    return templates.TemplateResponse(
        ctx.request, name, {"actor": ctx.actor, "when": when, **values}, status_code=status
    )


async def _page(ctx: Ctx, name: str, page: str, status: int = 200, **values: Any) -> Response:
    return await run_in_threadpool(render, ctx, name, page, status, when=when, **values)


# the trace list ----------------------------------------------------------------------


def _instant(value: str, param: str) -> int:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{param}: a date and time, e.g. 2026-01-31T12:00", param=param
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1e9)


def _number(p: dict[str, str], param: str, what: str) -> float | None:
    if not p.get(param):
        return None
    try:
        value = float(p[param])
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e15:
        raise InvalidInput(f"{param}: {what}", param=param)
    return value


def trace_query(params: dict[str, str], *, limit: int = 50) -> TraceQuery:
    """The list's filters from the form (every field a string, "" for none); raises
    InvalidInput naming the field."""
    p = {k: v.strip()[: 400 if k == "cursor" else 200] for k, v in params.items()}
    since = until = None
    if p.get("range"):
        if p["range"] not in RANGES:
            raise InvalidInput(f"range: one of {', '.join(RANGES)}", param="range")
        since = time.time_ns() - RANGES[p["range"]] * 1_000_000_000
    if p.get("since"):
        since = max(since or 0, _instant(p["since"], "since"))
    if p.get("until"):
        until = _instant(p["until"], "until")
    status = p.get("status") or None
    if status not in (None, "ok", "error"):
        raise InvalidInput("status: 'ok' or 'error'", param="status")
    attribute = None
    if p.get("attr"):
        key, eq, value = p["attr"].partition("=")
        if not eq or not key.strip():
            raise InvalidInput("attr: key=value, e.g. gen_ai.tool.name=search", param="attr")
        attribute = (key.strip(), value.strip())
    tokens = _number(p, "min_tokens", "a number of tokens")
    return TraceQuery(
        since_ns=since,
        until_ns=until,
        route=p.get("route") or None,
        model=p.get("model") or None,
        key_id=p.get("key") or None,
        user_id=p.get("user") or None,
        session_id=p.get("session") or None,
        status=status,
        min_duration_ms=_number(p, "min_ms", "a number of milliseconds"),
        min_cost_usd=_number(p, "min_cost", "an amount in USD"),
        min_tokens=None if tokens is None else int(tokens),
        attribute=attribute,
        text=p.get("q") or None,
        limit=limit,
        cursor=p.get("cursor") or None,
    )


def _older(base: str, params: dict[str, str], cursor: str | None) -> str | None:
    if cursor is None:
        return None
    kept = {k: v for k, v in params.items() if v and k != "cursor"}
    return f"{base}?{urlencode({**kept, 'cursor': cursor})}"


async def _traces(
    ctx: Ctx, params: dict[str, str], base: str, shown: dict[str, str]
) -> tuple[list[TraceSummary], str | None, str | None, int]:
    """The page of traces, the "older" link (`base` with the `shown` filters), an error
    to show and the status."""
    try:
        query = trace_query(params)
        store = _store(ctx)
        page = await run_in_threadpool(store.traces, ctx.workspace_id, query)
    except ShipyardError as exc:
        return [], None, exc.detail, exc.status
    return page.items, _older(base, shown, page.next_cursor), None, 200


@router.get("", name="ui.traces")
async def trace_list(
    window: str = Query("", alias="range"),
    since: str = "",
    until: str = "",
    route: str = "",
    model: str = "",
    user: str = "",
    session: str = "",
    status: str = "",
    min_ms: str = "",
    key: str = "",
    min_cost: str = "",
    min_tokens: str = "",
    attr: str = "",
    q: str = "",
    cursor: str = "",
    ctx: Ctx = Authorized("traces:read"),
) -> Response:
    params = {
        "range": window,
        "since": since,
        "until": until,
        "route": route,
        "model": model,
        "user": user,
        "session": session,
        "status": status,
        "min_ms": min_ms,
        "key": key,
        "min_cost": min_cost,
        "min_tokens": min_tokens,
        "attr": attr,
        "q": q,
        "cursor": cursor,
    }
    rows, older, error, code = await _traces(ctx, params, "/traces", params)
    values = {"rows": rows, "older": older, "error": error, "f": params}
    if "hx-request" in ctx.request.headers:
        return _fragment(ctx, "traces_table.html", code, **values)
    return await _page(ctx, "traces.html", "traces", code, ranges=list(RANGES), **values)


# sessions ----------------------------------------------------------------------------


@router.get("/sessions", name="ui.trace_sessions")
async def session_list(
    user: str = "", cursor: str = "", ctx: Ctx = Authorized("traces:read")
) -> Response:
    store = _store(ctx)
    error, code, rows, older = None, 200, [], None
    try:
        page = await run_in_threadpool(
            lambda: store.sessions(
                ctx.workspace_id, user_id=user.strip()[:200] or None, cursor=cursor or None
            )
        )
        rows = page.items
        older = _older("/traces/sessions", {"user": user}, page.next_cursor)
    except ShipyardError as exc:
        error, code = exc.detail, exc.status
    return await _page(
        ctx,
        "traces_sessions.html",
        "trace_sessions",
        code,
        rows=rows,
        older=older,
        error=error,
        user=user,
    )


@router.get("/sessions/{session_id:path}", name="ui.trace_session")
async def session_detail(
    session_id: str, cursor: str = "", ctx: Ctx = Authorized("traces:read")
) -> Response:
    params = {"session": session_id[:200], "cursor": cursor}
    base = f"/traces/sessions/{quote(session_id[:200], safe='')}"
    rows, older, error, code = await _traces(ctx, params, base, {})
    return await _page(
        ctx,
        "traces_session.html",
        "trace_sessions",
        code,
        session_id=session_id[:200],
        rows=rows,
        older=older,
        error=error,
    )


# the dashboard -----------------------------------------------------------------------


@dataclass
class GroupTotal:
    name: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def dashboard_charts(
    grouped: list[MetricPoint], overall: list[MetricPoint], by: str, buckets: list[int]
) -> tuple[list[Chart], list[GroupTotal]]:
    """Charts over the buckets: per group (the busiest TOP_GROUPS) requests, error rate,
    p90 latency, tokens and cost; latency p50/p90/p99 over every group."""
    totals: dict[str, GroupTotal] = {}
    cells: dict[str, dict[int, MetricPoint]] = defaultdict(dict)
    for point in grouped:
        name = point.group.get(by, "") or "(none)"
        t = totals.setdefault(name, GroupTotal(name))
        t.requests += point.requests
        t.errors += point.errors
        t.input_tokens += point.input_tokens
        t.output_tokens += point.output_tokens
        t.cost_usd += point.cost_usd
        cells[name][point.bucket_ns] = point
    ranked = sorted(totals.values(), key=lambda t: (-t.requests, t.name))
    top = [t.name for t in ranked[:TOP_GROUPS]]
    labels = [when(b)[5:16] for b in buckets]

    def per_group(value: Any, empty: float | None = 0.0) -> dict[str, list[float | None]]:
        """A value per bucket and group; `empty` where the group had no calls (0 for
        counts, None where there is nothing to measure)."""
        return {
            name: [value(cells[name][b]) if b in cells[name] else empty for b in buckets]
            for name in top
        }

    whole = {p.bucket_ns: p for p in overall}

    def overall_series(attr: str) -> list[float | None]:
        return [getattr(whole[b], attr) if b in whole else None for b in buckets]

    charts = [
        line_chart("Requests", "requests", "", labels, per_group(lambda p: p.requests)),
        line_chart(
            "Error rate",
            "errors",
            "%",
            labels,
            per_group(lambda p: 100 * p.error_rate, None),
            ".1f",
        ),
        line_chart(
            "Latency p50 / p90 / p99 (all)",
            "latency",
            "ms",
            labels,
            {
                "p50": overall_series("latency_p50_ms"),
                "p90": overall_series("latency_p90_ms"),
                "p99": overall_series("latency_p99_ms"),
            },
        ),
        line_chart(
            "Latency p90",
            "latency-group",
            "ms",
            labels,
            per_group(lambda p: p.latency_p90_ms, None),
        ),
        line_chart(
            "Tokens (in + out)",
            "tokens",
            "",
            labels,
            per_group(lambda p: p.input_tokens + p.output_tokens),
        ),
        line_chart("Cost", "cost", "USD", labels, per_group(lambda p: p.cost_usd), ".6f"),
    ]
    return charts, ranked


@router.get("/dashboard", name="ui.trace_dashboard")
async def dashboard(
    window: str = Query("24h", alias="range"),
    by: str = "route",
    route: str = "",
    model: str = "",
    ctx: Ctx = Authorized("traces:read"),
) -> Response:
    error, code = None, 200
    if window not in RANGES:
        error, code, window = f"range: one of {', '.join(RANGES)}", 400, "24h"
    if by not in ("route", "model"):
        error, code, by = "by: 'route' or 'model'", 400, "route"
    step = BUCKETS[window]
    until_ns = time.time_ns()
    since_ns = until_ns - RANGES[window] * 1_000_000_000
    first = since_ns // (step * 10**9) * step * 10**9
    buckets = list(range(first, until_ns, step * 10**9))
    store = _store(ctx)
    overall_query = MetricsQuery(
        since_ns=since_ns,
        until_ns=until_ns,
        bucket_seconds=step,
        route=route.strip()[:200] or None,
        model=model.strip()[:200] or None,
    )
    grouped_query = replace(overall_query, group_by=(by,))

    def load() -> tuple[list[MetricPoint], list[MetricPoint]]:
        grouped = store.metrics(ctx.workspace_id, grouped_query)
        return grouped, store.metrics(ctx.workspace_id, overall_query)

    grouped, overall = await run_in_threadpool(load)
    charts, totals = dashboard_charts(grouped, overall, by, buckets)
    return await _page(
        ctx,
        "traces_dashboard.html",
        "trace_dashboard",
        code,
        charts=charts,
        totals=totals,
        error=error,
        ranges=list(RANGES),
        f={"range": window, "by": by, "route": route, "model": model},
    )


# a trace -----------------------------------------------------------------------------


@dataclass
class Row:
    span: Span
    depth: int
    offset_pct: float
    width_pct: float


def span_tree(spans: list[Span], t0: int, t1: int) -> list[Row]:
    """The spans in tree order (each after its parent, siblings by start) with their
    depth and timing bar within [t0, t1]. A span whose parent is not in `spans` (on an
    earlier page, or never sent) starts a tree of its own, at depth 0 for a root and 1
    otherwise."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = defaultdict(list)
    tops: list[Span] = []
    for s in spans:  # in start order already
        if s.parent_id and s.parent_id in ids and s.parent_id != s.span_id:
            children[s.parent_id].append(s)
        else:
            tops.append(s)
    whole = max(t1 - t0, 1)
    rows: list[Row] = []
    seen: set[str] = set()
    stack = [(s, 0 if not s.parent_id else 1) for s in reversed(tops)]
    while stack:
        s, depth = stack.pop()
        if s.span_id in seen:  # a cycle of parents
            continue
        seen.add(s.span_id)
        offset = 100 * max(0, s.start_ns - t0) / whole
        width = 100 * max(0, min(s.end_ns, t1) - max(s.start_ns, t0)) / whole
        offset = min(offset, 99.7)  # a sliver at least, inside the track
        rows.append(Row(s, depth, offset, max(0.3, min(width, 100.0 - offset))))
        stack.extend((c, depth + 1) for c in reversed(children.get(s.span_id, [])))
    for s in spans:  # spans in a parent cycle, never reached from a top
        if s.span_id not in seen:
            rows.append(Row(s, 0, 0.0, 0.3))
    return rows


def span_view(span: Span) -> dict[str, Any]:
    def shown(value: Any) -> str:
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    return {
        "span": span,
        "attributes": sorted((k, shown(v)) for k, v in span.attributes.items()),
        "resource": sorted((k, shown(v)) for k, v in span.resource.items()),
        "events": [
            (
                str(e.get("name", "")),
                when(int(e.get("time_ns", 0) or 0)),
                shown(e.get("attributes", {})),
            )
            for e in span.events
        ],
    }


@router.get("/{trace_id}", name="ui.trace")
async def trace_detail(
    trace_id: str,
    cursor: str = "",
    span: str = "",
    ctx: Ctx = Authorized("traces:read"),
) -> Response:
    trace_id = trace_id[:64].lower()
    store = _store(ctx)
    try:
        summary = await run_in_threadpool(store.trace, ctx.workspace_id, trace_id)
        page = await run_in_threadpool(
            lambda: store.trace_spans(
                ctx.workspace_id, trace_id, cursor=cursor or None, limit=SPANS_PAGE
            )
        )
    except ShipyardError as exc:
        return await _page(ctx, "traces_trace.html", "traces", exc.status, error=exc.detail)
    spans = page.items
    if summary is None or not spans:
        detail = NotFound("no such trace in this workspace").detail
        return await _page(ctx, "traces_trace.html", "traces", 404, error=detail)
    # the whole trace's bounds and totals, from its summary, on every page
    start, end = summary.start_ns, max(summary.end_ns, summary.start_ns)
    rows = span_tree(spans, start, end)
    chosen = next((s for s in spans if s.span_id == span), None) if span else None
    if chosen is None and span:
        chosen = await run_in_threadpool(store.span, ctx.workspace_id, trace_id, span[:32])
    more = (
        f"/traces/{trace_id}?{urlencode({'cursor': page.next_cursor})}"
        if page.next_cursor
        else None
    )
    root = next((r.span for r in rows if not r.span.parent_id), rows[0].span)
    return await _page(
        ctx,
        "traces_trace.html",
        "traces",
        trace_id=trace_id,
        root=root,
        rows=rows,
        more=more,
        continued=bool(cursor),
        duration_ms=(end - start) / 1e6,
        tokens=summary.input_tokens + summary.output_tokens,
        cost=summary.cost_usd,
        detail=span_view(chosen or rows[0].span),
        # other capabilities' panels on a trace (feedback), each loaded by HTMX
        panels=[p.format(trace_id=quote(trace_id, safe="")) for p in ctx.platform.trace_panels],
        error=None,
    )


@router.get("/{trace_id}/spans/{span_id}", name="ui.trace_span")
async def span_detail(
    trace_id: str, span_id: str, ctx: Ctx = Authorized("traces:read")
) -> Response:
    if "hx-request" not in ctx.request.headers:  # a link opened on its own: the whole page
        return await trace_detail(trace_id, span=span_id, ctx=ctx)
    store = _store(ctx)
    found = await run_in_threadpool(
        store.span, ctx.workspace_id, trace_id[:64].lower(), span_id[:32].lower()
    )
    if found is None:
        return _fragment(ctx, "traces_span.html", 404, detail=None)
    return _fragment(ctx, "traces_span.html", detail=span_view(found))
