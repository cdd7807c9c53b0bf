"""The tracing capability's service: the trace store, the span writer in front of it,
each workspace's masking and retention, ingest, and the gateway's spans.

    OTLP ingest     IngestApp ─► Tracing.ingest (a thread: read + mask) ─► SpanWriter.emit
    gateway calls   every finished call (a CallSink) ─► gateway_span ─► SpanWriter.emit
    SpanWriter      write-ahead log append (the acknowledgement) ─► one writer thread ─►
                    TraceStore.write, under a file lock shared by every process of the
                    data dir (one writer per store file at a time)

A gateway call is one span: its ledger line (`gateway_requests`) keeps what budgets need
and the span's trace id; the span keeps the call's place in the caller's trace, timing
and attributes, and carries the request id (`shipyard.request_id`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import Counter, Gauge

from shipyard.durable import DurableWriter
from shipyard.errors import Unavailable
from shipyard.plugins import TraceStore
from shipyard.tracing.metrics import LLMMetrics
from shipyard.tracing.otlp import Decoded, Reader, cut
from shipyard.tracing.spans import Span

if TYPE_CHECKING:
    from shipyard.gateway.core.call import Call
    from shipyard.gateway.records.record import Record
    from shipyard.identity.actor import Actor
    from shipyard.platform import Platform
    from shipyard.tracing.alerts import AlertEngine
    from shipyard.tracing.config import WorkspaceTracing

log = logging.getLogger("shipyard.tracing")

RELOAD_SECONDS = 10.0  # settings changed through another replica are seen this late
RETENTION_SECONDS = 3600.0
MAX_INGESTS = 6  # export requests read or decoded at once; more wait for a 503's retry
_OPERATIONS = {
    "chat": "chat",
    "messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


class SpanWriter(DurableWriter[list[Span]]):
    """Batches of spans (one export request, or one gateway call) through the
    write-ahead log into the trace store."""

    what = "spans"

    def __init__(
        self, store: TraceStore, dropped: Counter, written: Counter, *, lock: Path | None, **kw: Any
    ) -> None:
        super().__init__(dropped, written, name="shipyard-spans", **kw)
        self.store = store
        self._lock_path = lock

    def encode(self, item: list[Span]) -> bytes:
        return orjson.dumps(item)

    def decode(self, payload: bytes) -> list[Span]:
        try:
            items = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(items, list):
            raise ValueError("not a list of spans")
        return [Span.from_dict(i) for i in items]

    def weight(self, item: list[Span]) -> int:
        return len(item)

    def write(self, items: Sequence[list[Span]]) -> None:
        spans = [s for batch in items for s in batch]
        with self._exclusive():
            self.store.write(spans)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One writer at a time per store file, across the processes of a data dir: a
        kernel lock that wakes the next writer at once, where SQLite's busy handler
        would sleep and retry (several processes on one file stalled for seconds)."""
        if self._lock_path is None:
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def close_store(self) -> None:
        self.store.close()


class Tracing:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.settings = settings
        registry = platform.metrics.registry
        self.received = Counter(
            "shipyard_trace_spans_received",
            "Spans received over OTLP, by result (accepted, rejected).",
            ["result"],
            registry=registry,
        )
        self.dropped = Counter(
            "shipyard_trace_spans_dropped",
            "Spans lost: refused by the store alone, or an unreadable log entry.",
            registry=registry,
        )
        self.written = Counter("shipyard_trace_spans_written", "Spans stored.", registry=registry)
        self.refused = Counter(
            "shipyard_trace_requests_refused",
            "Export requests answered 503 (no room: retry later).",
            registry=registry,
        )
        self.backlog_gauge = Gauge(
            "shipyard_trace_backlog_spans",
            "Spans acknowledged and not yet stored.",
            registry=registry,
        )
        self.backlog_gauge.set_function(lambda: self.writer.backlog if self.writer else 0)
        self.llm_metrics = LLMMetrics(registry)  # model calls on /metrics
        self.store: TraceStore | None = None
        self.writer: SpanWriter | None = None
        self.capacity = settings.trace_queue_spans
        self._configs: dict[str, WorkspaceTracing] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shipyard-otlp")
        self._ingesting = 0
        self._maintenance: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self.alerts: AlertEngine | None = None  # started with the store
        platform.call_sinks.append(self)  # every gateway call becomes a span

    # lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        await self.reload()
        self._maintenance = asyncio.create_task(self._maintain(), name="shipyard-tracing")
        from shipyard.tracing.alerts import AlertEngine

        self.alerts = AlertEngine(self)
        self.alerts.start()

    async def _maintain(self) -> None:
        """Every `RELOAD_SECONDS`: the workspaces' settings again (a change made through
        another replica); every `RETENTION_SECONDS`: retention."""
        last_purge = 0.0
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            try:
                await self.reload()
                if time.monotonic() - last_purge >= RETENTION_SECONDS:
                    last_purge = time.monotonic()
                    await asyncio.to_thread(self.apply_retention)
            except Exception:  # noqa: BLE001 - keep maintaining; the next round retries
                log.exception("tracing maintenance failed")

    def apply_retention(self, now_ns: int | None = None) -> int:
        """Delete the raw spans each workspace keeps no longer (`retention_days`); the
        roll-ups the metrics read stay. Returns the spans deleted."""
        store = self.store
        if store is None:
            return 0
        now_ns = now_ns if now_ns is not None else time.time_ns()
        deleted = 0
        for workspace_id, config in list(self._configs.items()):
            if config.retention_days:
                cutoff = now_ns - config.retention_days * 86_400 * 10**9
                deleted += store.purge(workspace_id, cutoff)
        if deleted:
            log.info("retention: %d spans deleted", deleted)
        return deleted

    def _open(self) -> None:
        from shipyard.tracing.store import open_store

        home = self.settings.home
        url = self.settings.trace_store_url
        self.store = open_store(url)
        self.writer = SpanWriter(
            self.store,
            self.dropped,
            self.written,
            lock=home / "traces.writer.lock" if url.startswith("sqlite") else None,
            capacity=self.capacity,
            # 4,096 a transaction: with checkpoints off the writer's path, as fast as 8,192
            # (~6k spans/s either way) with a lower p99 acknowledgement (c=1: 160 -> 106 ms)
            batch=4096,
            wal_dir=home / "wal" / "spans",
            fsync_interval=self.settings.trace_fsync_seconds,
        )
        self.writer.start()  # replays what was acknowledged and not yet stored

    async def stop(self) -> None:
        if self.alerts is not None:
            await self.alerts.stop()
            self.alerts = None
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
            self.writer = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def reload(self) -> None:
        """Every workspace's tracing settings, read into memory (ingest never reads them
        from the database)."""
        try:
            from shipyard.tracing.config import load_all
        except ImportError:  # pragma: no cover - the settings module is not there yet
            return
        self._configs = await asyncio.to_thread(load_all, self.platform.db)

    def config(self, workspace_id: str) -> WorkspaceTracing:
        from shipyard.tracing.config import DEFAULT

        return self._configs.get(workspace_id, DEFAULT)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every span acknowledged so far is stored (tests)."""
        if self.writer is not None:
            self.writer.flush(timeout)

    # ingest --------------------------------------------------------------------------

    def admit(self) -> None:
        """Room for one more export request, or a 503 the exporter retries."""
        writer = self.writer
        if writer is None:
            raise Unavailable("the trace store is starting", retry_after=1)
        if writer.backlog + 512 > self.capacity or self._ingesting >= MAX_INGESTS:
            self.refused.inc()
            raise Unavailable("the trace writer is behind; retry later", retry_after=1)

    async def ingest(self, actor: Actor, body: bytes, *, json: bool) -> Decoded:
        with self._lock:
            if self._ingesting >= MAX_INGESTS:
                self.refused.inc()
                raise Unavailable("too many export requests at once; retry later", retry_after=1)
            self._ingesting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._ingest, actor, body, json)
        finally:
            with self._lock:
                self._ingesting -= 1

    def _ingest(self, actor: Actor, body: bytes, json: bool) -> Decoded:
        reader = self.reader(actor.workspace_id, actor.id)
        decoded = reader.json(body) if json else reader.protobuf(body)
        if decoded.rejected:
            self.received.labels("rejected").inc(decoded.rejected)
        if decoded.spans:
            writer = self.writer
            if writer is None or not writer.submit(decoded.spans):
                self.refused.inc()
                raise Unavailable("the trace writer is behind; retry later", retry_after=1)
            self.received.labels("accepted").inc(len(decoded.spans))
            self.llm_metrics.observe(decoded.spans)
        return decoded

    def reader(self, workspace_id: str, key_id: str) -> Reader:
        config = self.config(workspace_id)
        return Reader(
            workspace_id=workspace_id,
            key_id=key_id,
            masker=config.masker,
            max_chars=self.settings.trace_max_content_chars,
            capture_content=config.capture_content,
            price=functools.cache(self._price),  # a request's spans name a few models
        )

    def _price(self, model: str) -> tuple[float, float] | None:
        from shipyard.gateway.config.prices import price_for

        gateway = self.platform.services.get("gateway")
        if gateway is None:
            return None
        price = price_for(gateway.snapshot.prices, model)
        return None if price is None else (price.input, price.output)

    def submit(self, spans: list[Span]) -> bool:
        """Spans Shipyard made itself (a pipeline's): masked with their workspace's
        rules, content dropped where the workspace captures none, then written like
        ingested ones. False when the writer is behind (counted as refused)."""
        writer = self.writer
        if writer is None or not spans:
            return False
        for span in spans:
            config = self.config(span.workspace_id)
            span.status_message = config.masker.mask(span.status_message)
            if config.capture_content:
                span.input = config.masker.mask(span.input)
                span.output = config.masker.mask(span.output)
                span.attributes = config.masker.mask_value(span.attributes)
            else:  # an error's text may quote content too
                span.input = span.output = ""
                span.status_message = "failed" if span.status == "error" else ""
                span.attributes = {
                    k: v for k, v in span.attributes.items() if not k.endswith(_CONTENT)
                }
        if not writer.submit(spans):
            self.refused.inc()
            return False
        self.received.labels("accepted").inc(len(spans))
        return True

    # gateway calls (a CallSink) ------------------------------------------------------

    def emit(self, record: Record, call: Call | None = None) -> None:
        writer = self.writer
        if writer is None or not record.trace_id:
            return
        config = self.config(record.workspace_id)
        span = gateway_span(record, config.masker)
        if call is not None and config.capture_content:
            limit = self.settings.trace_max_content_chars
            span.input = config.masker.mask(cut(_request_text(call.body), limit))
            span.output = config.masker.mask(cut(_reply_text(call.output), limit))
        if writer.submit([span]):
            self.llm_metrics.observe((span,))


# attributes that hold content (inputs, outputs, retrieved text)
_CONTENT = ("input.value", "output.value", ".content", ".metadata")


def gateway_span(rec: Record, masker: Any) -> Span:
    """The span of one gateway call, with GenAI attributes."""
    start_ns = int(rec.at.timestamp() * 1e9)
    operation = _OPERATIONS.get(rec.api, rec.api)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": rec.route,
        "gen_ai.usage.input_tokens": rec.prompt_tokens,
        "gen_ai.usage.output_tokens": rec.completion_tokens,
        "http.response.status_code": rec.status,
        "shipyard.request_id": rec.id,
        "shipyard.api": rec.api,
        "shipyard.stream": rec.stream,
        "shipyard.cache_hit": rec.cache_hit,
    }
    if rec.model:
        attributes["gen_ai.response.model"] = rec.model
    if rec.provider:
        attributes["gen_ai.provider.name"] = rec.provider
    if rec.deployment_id:
        attributes["shipyard.deployment_id"] = rec.deployment_id
    if rec.retries:
        attributes["shipyard.retries"] = rec.retries
    if rec.fallbacks:
        attributes["shipyard.fallbacks"] = list(rec.fallbacks)
    if rec.error_class:
        attributes["error.type"] = rec.error_class
    if rec.end_user:
        attributes["user.id"] = masker.mask(rec.end_user)
    if rec.prompt:  # the registry prompt version the messages were rendered from
        attributes["shipyard.prompt"] = rec.prompt
    return Span(
        workspace_id=rec.workspace_id,
        trace_id=rec.trace_id,
        span_id=rec.span_id,
        parent_id=rec.parent_span_id,
        name=f"{operation} {rec.route}",
        kind="server",
        start_ns=start_ns,
        end_ns=start_ns + int(rec.latency_ms * 1e6),
        status="error" if rec.status >= 400 else "ok",
        status_message=rec.error_class,
        service="shipyard-gateway",
        operation=operation,
        model=rec.model or rec.route,
        provider=rec.provider,
        route=rec.route,
        key_id=rec.key_id,
        user_id=attributes.get("user.id", ""),
        input_tokens=rec.prompt_tokens,
        output_tokens=rec.completion_tokens,
        cost_usd=rec.cost_usd,
        ttft_ms=rec.ttft_ms,
        attributes=attributes,
        resource={"service.name": "shipyard-gateway"},
    )


def _request_text(body: dict[str, Any]) -> str:
    """What a gateway call was asked: its messages, prompt or input, as JSON."""
    for key in ("messages", "prompt", "input"):
        value = body.get(key)
        if value is not None:
            return value if isinstance(value, str) else _json(value)
    return ""


def _reply_text(output: Any) -> str:
    """What a gateway call answered: the first choice's text (a unary reply), the
    streamed text, or nothing for embeddings (vectors are not content)."""
    if isinstance(output, bytes):
        try:
            output = orjson.loads(output)
        except orjson.JSONDecodeError:
            return ""
    if isinstance(output, str):
        return output
    if not isinstance(output, dict):
        return ""
    choices = output.get("choices")
    if isinstance(choices, list) and choices:
        first: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
        found = first.get("message")
        message: dict[str, Any] = found if isinstance(found, dict) else {}
        if message.get("tool_calls"):
            return _json(message)
        text = message.get("content") or first.get("text") or ""
        return text if isinstance(text, str) else _json(text)
    if isinstance(output.get("content"), list):  # Anthropic-shaped
        return _json(output["content"])
    return ""


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
