"""The trace query API under /api/tracing, in the caller's workspace (`traces:read`):
the trace list with its filters and full text, one trace as a tree-ready page of spans
(a huge trace is paged, never loaded whole), one span in full, sessions, and the metric
roll-ups. Thin routes over the `TraceStore`; its calls block, so they run in the thread
pool. Another workspace's trace is not there (404), never visible."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel

from shipyard.errors import InvalidInput, NotFound, Unavailable
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Timestamp
from shipyard.tracing.spans import (
    MetricPoint,
    MetricsQuery,
    SessionSummary,
    Span,
    TraceQuery,
    TraceSummary,
)

if TYPE_CHECKING:
    from shipyard.plugins import TraceStore

router = APIRouter(prefix="/api/tracing", tags=["tracing"])
T = TypeVar("T")

MAX_TRACES = 200  # a page of the trace list
MAX_SPANS = 1000  # a page of a trace's spans
MAX_SESSIONS = 200
MAX_BUCKETS = 5000  # points per group in one metrics answer
GROUPS = ("route", "model", "key_id")
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
PREVIEW = 200  # input and output characters of a span in a trace's span list
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
TraceId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{32}$", description="32 hex digits")]
SpanId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{16}$", description="16 hex digits")]
Cursor = Annotated[Text | None, Query(max_length=400, description="next_cursor of a page")]


def _filter(description: str = "") -> Any:
    return Query(default=None, min_length=1, max_length=200, description=description or None)


# --- replies ---------------------------------------------------------------------------


class TracePublic(BaseModel):
    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    started_at: datetime
    duration_ms: float
    status: Literal["ok", "error"]
    span_count: int
    error_count: int
    service: str
    model: str
    route: str
    key_id: str
    user_id: str
    session_id: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    input: str  # the root span's, cut to a preview
    output: str


class TracePage(BaseModel):
    data: list[TracePublic]
    next_cursor: str | None


class SpanBrief(BaseModel):
    """A span in a trace's span list: enough for the tree and its timing bars."""

    span_id: str
    parent_id: str  # "" for a root span
    depth: int | None  # below the root; null: the parent is on an earlier page
    name: str
    kind: str
    status: str
    status_message: str
    service: str
    operation: str
    model: str
    provider: str
    route: str
    start_ns: int
    end_ns: int
    offset_ms: float  # from the trace's start
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    ttft_ms: float | None
    input_preview: str
    output_preview: str


class SpanPublic(SpanBrief):
    """One span in full."""

    trace_id: str
    key_id: str
    user_id: str
    session_id: str
    input: str
    output: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    resource: dict[str, Any]


class SpanPage(BaseModel):
    data: list[SpanBrief]
    next_cursor: str | None


class TraceDetail(BaseModel):
    trace: TracePublic
    spans: list[SpanBrief]  # the first page, in start order
    next_cursor: str | None  # for /traces/{trace_id}/spans


class SessionPublic(BaseModel):
    session_id: str
    user_id: str
    trace_count: int
    start_ns: int
    end_ns: int
    started_at: datetime
    last_active_at: datetime
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error_count: int


class SessionPage(BaseModel):
    data: list[SessionPublic]
    next_cursor: str | None


class SessionTraces(BaseModel):
    session_id: str
    data: list[TracePublic]  # the session's traces, newest first
    next_cursor: str | None


class MetricPointPublic(BaseModel):
    bucket: datetime  # the bucket's start
    bucket_ns: int
    group: dict[str, str]
    requests: int
    errors: int
    error_rate: float
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p90_ms: float | None
    ttft_p99_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    input_chars: int
    output_chars: int


class MetricsPublic(BaseModel):
    since: datetime
    until: datetime
    bucket_seconds: int
    group_by: list[str]
    data: list[MetricPointPublic]  # oldest bucket first


def _time(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _ns(value: datetime) -> int:
    """Unix nanoseconds, within what spans can carry (1970 to 2116: the store's bounds)."""
    return max(0, min(2**62, (value - _EPOCH) // timedelta(microseconds=1) * 1000))


def trace_public(t: TraceSummary) -> TracePublic:
    return TracePublic(
        trace_id=t.trace_id,
        name=t.name,
        start_ns=t.start_ns,
        end_ns=t.end_ns,
        started_at=_time(t.start_ns),
        duration_ms=t.duration_ms,
        status="error" if t.error_count else "ok",
        span_count=t.span_count,
        error_count=t.error_count,
        service=t.service,
        model=t.model,
        route=t.route,
        key_id=t.key_id,
        user_id=t.user_id,
        session_id=t.session_id,
        input_tokens=t.input_tokens,
        output_tokens=t.output_tokens,
        cost_usd=t.cost_usd,
        input=t.input,
        output=t.output,
    )


def _brief(s: Span, trace_start_ns: int, depth: int | None) -> dict[str, Any]:
    return {
        "span_id": s.span_id,
        "parent_id": s.parent_id,
        "depth": depth,
        "name": s.name,
        "kind": s.kind,
        "status": s.status,
        "status_message": s.status_message,
        "service": s.service,
        "operation": s.operation,
        "model": s.model,
        "provider": s.provider,
        "route": s.route,
        "start_ns": s.start_ns,
        "end_ns": s.end_ns,
        "offset_ms": max(0, s.start_ns - trace_start_ns) / 1e6,
        "duration_ms": s.duration_ms,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "cost_usd": s.cost_usd,
        "ttft_ms": s.ttft_ms,
        "input_preview": s.input[:PREVIEW],
        "output_preview": s.output[:PREVIEW],
    }


def span_briefs(spans: list[Span], trace_start_ns: int) -> list[SpanBrief]:
    """Spans in start order with their depth where this page tells it (a root is 0, a
    child one more than its parent when the parent is on the page)."""
    depths: dict[str, int | None] = {}
    out = []
    for s in spans:
        if not s.parent_id:
            depth: int | None = 0
        else:
            parent = depths.get(s.parent_id)
            depth = None if parent is None else parent + 1
        depths.setdefault(s.span_id, depth)
        out.append(SpanBrief(**_brief(s, trace_start_ns, depth)))
    return out


def session_public(s: SessionSummary) -> SessionPublic:
    return SessionPublic(
        session_id=s.session_id,
        user_id=s.user_id,
        trace_count=s.trace_count,
        start_ns=s.start_ns,
        end_ns=s.end_ns,
        started_at=_time(s.start_ns),
        last_active_at=_time(s.end_ns),
        input_tokens=s.input_tokens,
        output_tokens=s.output_tokens,
        cost_usd=s.cost_usd,
        error_count=s.error_count,
    )


def point_public(p: MetricPoint) -> MetricPointPublic:
    return MetricPointPublic(
        bucket=_time(p.bucket_ns),
        bucket_ns=p.bucket_ns,
        group=p.group,
        requests=p.requests,
        errors=p.errors,
        error_rate=p.error_rate,
        latency_p50_ms=p.latency_p50_ms,
        latency_p90_ms=p.latency_p90_ms,
        latency_p99_ms=p.latency_p99_ms,
        ttft_p50_ms=p.ttft_p50_ms,
        ttft_p90_ms=p.ttft_p90_ms,
        ttft_p99_ms=p.ttft_p99_ms,
        input_tokens=p.input_tokens,
        output_tokens=p.output_tokens,
        cost_usd=p.cost_usd,
        input_chars=p.input_chars,
        output_chars=p.output_chars,
    )


# --- helpers ---------------------------------------------------------------------------


def _store(ctx: Ctx) -> TraceStore:
    service = ctx.platform.services.get("tracing")
    store = None if service is None else service.store
    if store is None:
        raise Unavailable("the trace store is starting", retry_after=1)
    return store  # type: ignore[no-any-return]  # Platform services are Any


async def _blocking(work: Callable[[], T]) -> T:
    return await run_in_threadpool(work)


def _attribute(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    key, sep, wanted = value.partition(":")
    if not sep or not key:
        raise InvalidInput(
            "attribute is key:value (a span attribute's key, then ':')", param="attribute"
        )
    return key, wanted


def _range(low: float | None, high: float | None, name: str) -> None:
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"min_{name} is above max_{name}", param=f"min_{name}")


def _trace_start(store: TraceStore, workspace_id: str, trace_id: str) -> int:
    found = store.trace(workspace_id, trace_id)
    if found is None:
        raise NotFound("no such trace")
    return found.start_ns


# --- routes ----------------------------------------------------------------------------


@router.get("/traces", name="tracing.traces.list")
async def list_traces(
    since: Timestamp | None = Query(default=None, description="traces that start at or after"),
    until: Timestamp | None = Query(default=None, description="traces that start before"),
    route: Text | None = _filter(),
    model: Text | None = _filter(),
    key_id: Text | None = _filter(),
    user_id: Text | None = _filter(),
    session_id: Text | None = _filter(),
    service: Text | None = _filter("the resource's service.name"),
    status: Literal["ok", "error"] | None = None,
    min_duration_ms: float | None = Query(default=None, ge=0, le=1e12),
    max_duration_ms: float | None = Query(default=None, ge=0, le=1e12),
    min_cost: float | None = Query(default=None, ge=0, le=1e12, description="USD"),
    max_cost: float | None = Query(default=None, ge=0, le=1e12, description="USD"),
    min_tokens: int | None = Query(default=None, ge=0, le=2**53),
    max_tokens: int | None = Query(default=None, ge=0, le=2**53),
    attribute: Text | None = Query(
        default=None, min_length=2, max_length=1000, description="key:value a span carries"
    ),
    q: Text | None = Query(
        default=None, max_length=1000, description="full text over inputs and outputs"
    ),
    limit: int = Query(default=50, ge=1, le=MAX_TRACES),
    cursor: Cursor = None,
    ctx: Ctx = Authorized("traces:read"),
) -> TracePage:
    _range(min_duration_ms, max_duration_ms, "duration_ms")
    _range(min_cost, max_cost, "cost")
    _range(min_tokens, max_tokens, "tokens")
    query = TraceQuery(
        since_ns=None if since is None else _ns(since),
        until_ns=None if until is None else _ns(until),
        route=route,
        model=model,
        key_id=key_id,
        user_id=user_id,
        session_id=session_id,
        service=service,
        status=status,
        min_duration_ms=min_duration_ms,
        max_duration_ms=max_duration_ms,
        min_cost_usd=min_cost,
        max_cost_usd=max_cost,
        min_tokens=min_tokens,
        max_tokens=max_tokens,
        attribute=_attribute(attribute),
        text=q,
        limit=limit,
        cursor=cursor,
    )
    store = _store(ctx)
    page = await _blocking(lambda: store.traces(ctx.workspace_id, query))
    return TracePage(data=[trace_public(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/traces/{trace_id}", name="tracing.traces.get")
async def get_trace(
    trace_id: TraceId,
    limit: int = Query(default=200, ge=1, le=MAX_SPANS, description="spans on the first page"),
    ctx: Ctx = Authorized("traces:read"),
) -> TraceDetail:
    store = _store(ctx)
    ws, tid = ctx.workspace_id, trace_id.lower()

    def work() -> TraceDetail:
        trace = store.trace(ws, tid)
        if trace is None:
            raise NotFound("no such trace")
        page = store.trace_spans(ws, tid, limit=limit)
        return TraceDetail(
            trace=trace_public(trace),
            spans=span_briefs(page.items, trace.start_ns),
            next_cursor=page.next_cursor,
        )

    return await _blocking(work)


@router.get("/traces/{trace_id}/spans", name="tracing.traces.spans")
async def list_spans(
    trace_id: TraceId,
    cursor: Cursor = None,
    limit: int = Query(default=200, ge=1, le=MAX_SPANS),
    ctx: Ctx = Authorized("traces:read"),
) -> SpanPage:
    store = _store(ctx)
    ws, tid = ctx.workspace_id, trace_id.lower()

    def work() -> SpanPage:
        start = _trace_start(store, ws, tid)
        page = store.trace_spans(ws, tid, cursor=cursor, limit=limit)
        return SpanPage(data=span_briefs(page.items, start), next_cursor=page.next_cursor)

    return await _blocking(work)


@router.get("/traces/{trace_id}/spans/{span_id}", name="tracing.spans.get")
async def get_span(
    trace_id: TraceId, span_id: SpanId, ctx: Ctx = Authorized("traces:read")
) -> SpanPublic:
    store = _store(ctx)
    ws, tid, sid = ctx.workspace_id, trace_id.lower(), span_id.lower()

    def work() -> SpanPublic:
        span = store.span(ws, tid, sid)
        if span is None:
            raise NotFound("no such span")
        start = _trace_start(store, ws, tid)
        depth = 0 if not span.parent_id else None
        return SpanPublic(
            **_brief(span, start, depth),
            trace_id=span.trace_id,
            key_id=span.key_id,
            user_id=span.user_id,
            session_id=span.session_id,
            input=span.input,
            output=span.output,
            attributes=span.attributes,
            events=span.events,
            resource=span.resource,
        )

    return await _blocking(work)


@router.get("/sessions", name="tracing.sessions.list")
async def list_sessions(
    user_id: Text | None = _filter(),
    limit: int = Query(default=50, ge=1, le=MAX_SESSIONS),
    cursor: Cursor = None,
    ctx: Ctx = Authorized("traces:read"),
) -> SessionPage:
    store = _store(ctx)
    page = await _blocking(
        lambda: store.sessions(ctx.workspace_id, user_id=user_id, cursor=cursor, limit=limit)
    )
    return SessionPage(data=[session_public(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/sessions/{session_id}", name="tracing.sessions.get")
async def get_session(
    session_id: Annotated[Text, Path(min_length=1, max_length=200)],
    limit: int = Query(default=50, ge=1, le=MAX_TRACES),
    cursor: Cursor = None,
    ctx: Ctx = Authorized("traces:read"),
) -> SessionTraces:
    store = _store(ctx)
    query = TraceQuery(session_id=session_id, limit=limit, cursor=cursor)
    page = await _blocking(lambda: store.traces(ctx.workspace_id, query))
    if not page.items and cursor is None:
        raise NotFound("no such session")
    return SessionTraces(
        session_id=session_id,
        data=[trace_public(t) for t in page.items],
        next_cursor=page.next_cursor,
    )


def _bucket(value: str) -> int:
    seconds = BUCKETS.get(value)
    if seconds is None:
        if not value.isdigit() or len(value) > 9:
            raise InvalidInput("bucket is minute, hour, day or a number of seconds", param="bucket")
        seconds = int(value)
        if seconds < 60 or seconds % 60:
            raise InvalidInput("bucket seconds are a positive multiple of 60", param="bucket")
    return seconds


def _group_by(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return ()
    names = [n.strip() for n in value.split(",")]
    for name in names:
        if name not in GROUPS:
            raise InvalidInput(f"group_by takes {', '.join(GROUPS)}", param="group_by")
    return tuple(dict.fromkeys(names))


@router.get("/metrics", name="tracing.metrics")
async def metrics(
    since: Timestamp | None = Query(default=None, description="default: a day before until"),
    until: Timestamp | None = Query(default=None, description="default: now"),
    bucket: str = Query(
        default="hour", max_length=12, description="minute, hour, day or seconds (×60)"
    ),
    group_by: str | None = Query(
        default=None, max_length=100, description="comma-separated: route, model, key_id"
    ),
    route: Text | None = _filter(),
    model: Text | None = _filter(),
    key_id: Text | None = _filter(),
    ctx: Ctx = Authorized("traces:read"),
) -> MetricsPublic:
    seconds = _bucket(bucket)
    groups = _group_by(group_by)
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=1)
    if start >= end:
        raise InvalidInput("since must be before until", param="since")
    if (end - start) / timedelta(seconds=seconds) > MAX_BUCKETS:
        raise InvalidInput(
            f"at most {MAX_BUCKETS} buckets: a longer bucket or a shorter range", param="bucket"
        )
    query = MetricsQuery(
        since_ns=_ns(start),
        until_ns=_ns(end),
        bucket_seconds=seconds,
        group_by=groups,
        route=route,
        model=model,
        key_id=key_id,
    )
    store = _store(ctx)
    points = await _blocking(lambda: store.metrics(ctx.workspace_id, query))
    return MetricsPublic(
        since=start,
        until=end,
        bucket_seconds=seconds,
        group_by=list(groups),
        data=[point_public(p) for p in points],
    )
