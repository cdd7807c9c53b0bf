"""The Gateway: holds the configuration snapshot, providers, balancer, governor, caches
and call sinks, and runs one call end to end. No HTTP here: `api/v1.py` and
`api/messages.py` are the HTTP faces; `chat()` and `chat_stream()` are the typed
in-process call, governed and recorded like any other.

A call, top to bottom (`run`):

    record = new record                       # completed once, in `_finish`
    async with governor.admit(...) as admission:   # limits; budget reserved (or refused)
        reply from the exact or semantic cache     # nothing charged: reservation given back
        outcome = executor.call(...)               # deployment, result, retries, fallbacks
        admission.charge(cost, tokens)             # settled when the block ends
    _finish(record)                           # status from how the call ended; to the sinks
  or, streaming, the admission is handed over to the stream, which settles it and
  finishes the record when the stream ends, fails, or is abandoned.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from shipyard.crypto import SecretBox
from shipyard.errors import (
    ErrorClass,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ShipyardError,
    Unavailable,
    UpstreamError,
)
from shipyard.gateway.backends.memory import InProcessCache, InProcessCounters
from shipyard.gateway.config import snapshot as gw_state
from shipyard.gateway.config.prices import FREE, deployment_price
from shipyard.gateway.config.snapshot import Snapshot
from shipyard.gateway.config.specs import Price, RouteSpec
from shipyard.gateway.core.balancer import Balancer
from shipyard.gateway.core.call import (
    CHAT_API,
    EMBEDDINGS_API,
    Call,
    ChatRequest,
    ChatResult,
    EmbedResult,
    Reply,
    StreamReply,
)
from shipyard.gateway.core.cost import count_text_tokens
from shipyard.gateway.core.executor import Executor, RetryPolicy, StreamOutcome
from shipyard.gateway.core.governance import Admission, Governor, period_start, scopes_for
from shipyard.gateway.core.semantic import SemanticCache, prompt_text
from shipyard.gateway.providers.pool import ProviderPool
from shipyard.gateway.records.record import Record
from shipyard.gateway.records.store import record_store
from shipyard.gateway.records.writer import RecordWriter
from shipyard.http.render import openai_type
from shipyard.identity.actor import Actor
from shipyard.plugins import (
    CallSink,
    Counters,
    Plugins,
    PromptSource,
    ResponseCache,
    RouteResolver,
)
from shipyard.store import Database, utcnow

log = logging.getLogger("shipyard.gateway")
Body = dict[str, Any]
# a chat call whose model names another capability's thing ("pipeline:name@alias")
VirtualModel = Callable[[Call, str], Awaitable[Reply | StreamReply]]
# what such a capability lists on `GET /v1/models` for a caller: OpenAI model objects
# (run in a thread: it may read the database)
VirtualModels = Callable[[Actor], list[dict[str, Any]]]


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class _RouteStats:
    statuses: dict[int, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


class CallStats:
    """Per-route call statistics for Prometheus: plain numbers updated on the event loop
    (no lock per increment, as `prometheus_client` children take), read at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._routes: dict[str, _RouteStats] = {}
        registry.register(self)

    def observe(self, rec: Record) -> None:
        stats = self._routes.get(rec.route)
        if stats is None:
            if len(self._routes) > 10_000:  # bounded: routes are configuration, not input
                self._routes.clear()
            stats = self._routes[rec.route] = _RouteStats()
        stats.statuses[rec.status] = stats.statuses.get(rec.status, 0) + 1
        seconds = rec.latency_ms / 1000
        stats.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        stats.latency_sum += seconds
        stats.tokens_in += rec.prompt_tokens
        stats.tokens_out += rec.completion_tokens
        stats.cost += rec.cost_usd

    def collect(self) -> Iterator[Metric]:
        routes = dict(self._routes)  # one atomic copy; the loop keeps counting
        requests = CounterMetricFamily(
            "shipyard_gateway_requests",
            "Gateway calls by route and status.",
            labels=["route", "status"],
        )
        latency = HistogramMetricFamily(
            "shipyard_gateway_request_duration_seconds",
            "Gateway call latency by route.",
            labels=["route"],
        )
        tokens = CounterMetricFamily(
            "shipyard_gateway_tokens",
            "Tokens by route and direction.",
            labels=["route", "direction"],
        )
        cost = CounterMetricFamily(
            "shipyard_gateway_cost_usd", "Cost in USD by route.", labels=["route"]
        )
        for route, stats in sorted(routes.items()):
            for status, count in sorted(dict(stats.statuses).items()):
                requests.add_metric([route, str(status)], count)
            counts, running = list(stats.buckets), 0
            cumulative = []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                running += count
                cumulative.append(
                    ("+Inf" if bound == float("inf") else repr(float(bound)), running)
                )
            latency.add_metric([route], cumulative, sum_value=stats.latency_sum)
            tokens.add_metric([route, "input"], stats.tokens_in)
            tokens.add_metric([route, "output"], stats.tokens_out)
            cost.add_metric([route], stats.cost)
        yield from (requests, latency, tokens, cost)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = CallStats(registry)
        self.records_dropped = Counter(
            "shipyard_gateway_records_dropped",
            "Request records dropped (queue full or write failed).",
            registry=registry,
        )
        self.records_written = Counter(
            "shipyard_gateway_records_written", "Request records written.", registry=registry
        )
        self.cache = Counter(
            "shipyard_gateway_cache", "Cache lookups by result.", ["result"], registry=registry
        )


class Gateway:
    def __init__(
        self,
        *,
        db: Database,
        box: SecretBox,
        plugins: Plugins,
        registry: CollectorRegistry,
        sinks: list[CallSink] | None = None,
        resolvers: dict[str, RouteResolver] | None = None,
        prompt_sources: list[PromptSource] | None = None,
        counters: Counters | None = None,
        cache: ResponseCache | None = None,
        retry: RetryPolicy | None = None,
        balancer: Balancer | None = None,
        local_threads: int | None = None,
        local_replicas: int = 1,
        local_engine: str = "python",
        local_slots: int = 4,
        llama_server: str = "",
        ray_address: str = "",
        reload_interval: float = 2.0,
        probe_interval: float = 5.0,
        ledger_interval: float = 60.0,
        records_dir: Path | None = None,
        records_fsync: float | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.metrics = GatewayMetrics(registry)
        self.counters: Counters = counters or InProcessCounters()
        self.cache: ResponseCache = cache or InProcessCache()
        self.governor = Governor(self.counters)
        self.pool = ProviderPool(plugins)
        self.balancer = balancer or Balancer()
        self.executor = Executor(self.pool, self.balancer, retry or RetryPolicy())
        self.records = RecordWriter(  # records_dir: its write-ahead logs (None: memory only)
            record_store(db),
            self.metrics.records_dropped,
            self.metrics.records_written,
            wal_dir=records_dir,
            fsync_interval=records_fsync,
        )
        # every finished call goes to each sink; other capabilities append theirs
        self.sinks: list[CallSink] = sinks if sinks is not None else []
        self.sinks.insert(0, self.records)
        # route target kind -> resolver; other capabilities add theirs (the registry)
        self.resolvers: dict[str, RouteResolver] = resolvers if resolvers is not None else {}
        self.prompt_sources: list[PromptSource] = (
            prompt_sources if prompt_sources is not None else []
        )
        # "prefix" -> a handler of chat calls whose model is "prefix:<ref>" (the
        # pipelines capability serves `pipeline:name@alias`); (call, ref) -> the reply
        self.virtual: dict[str, VirtualModel] = {}
        self.virtual_models: dict[str, VirtualModels] = {}  # the same prefixes, listed
        self.snapshot = Snapshot()
        self.semantic = SemanticCache()
        self._builtin_options: dict[str, object] = {}
        if local_threads:
            self._builtin_options["n_threads"] = local_threads
        if local_replicas > 1:
            self._builtin_options["replicas"] = local_replicas
        if local_engine == "server":
            self._builtin_options.update(engine="server", slots=local_slots)
        from shipyard.gateway.providers import llama_server as server

        server.configure(llama_server)  # process-wide; empty: the one setup built
        if ray_address:
            from shipyard import ray_cluster

            ray_cluster.configure(ray_address)
        self._reload_interval = reload_interval
        self._probe_interval = probe_interval
        self._ledger_interval = ledger_interval
        self._tasks: list[asyncio.Task[None]] = []

    # Life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # the write-ahead log is replayed into the store first: the budgets the reload
        # seeds from the ledger then count every record acknowledged before a crash
        await asyncio.to_thread(self.records.start)
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._watch_config()),
            asyncio.create_task(self._probe()),
            asyncio.create_task(self._keep_budgets()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.pool.close()
        await self.counters.close()
        await self.cache.close()
        await asyncio.to_thread(self.records.stop)

    async def reload(self) -> None:
        """Load the configuration snapshot, then seed the budget counters from the
        ledger (a budget added later counts what was already spent)."""
        self.snapshot = await asyncio.to_thread(
            gw_state.load,
            self.db,
            self.box,
            self._builtin_options,
            self.resolvers,
            self.prompt_sources,
        )
        # a provider no route uses any more is closed (its model processes end)
        self.pool.retain(
            {d.provider.id for r in self.snapshot.routes.values() for d in r.deployments}
        )
        await self.seed_budgets()

    async def _watch_config(self) -> None:
        """Other replicas change the configuration too: reload when its version moves."""
        while True:
            await asyncio.sleep(self._reload_interval)
            try:
                version = await asyncio.to_thread(gw_state.read_version, self.db)
                if version != self.snapshot.version:
                    await self.reload()
            except Exception:  # noqa: BLE001 - keep serving the last good snapshot
                log.warning("gateway configuration reload failed", exc_info=True)

    async def seed_budgets(self) -> None:
        """Raise the budget counters to the spend ledger (the request records, after
        what the writer has queued is written): the counters are its cache, with
        reservations in flight on top, so a restart, a deploy or a flushed Redis cannot
        hand a budget out twice."""
        snap = self.snapshot
        periods = {lim.budget_period for lim in snap.limits.values() if lim.budget_usd}
        for period in sorted(periods):
            spend = await self.ledger(period, flush=self.records.running)
            seeds = self.governor.ledger_seeds(snap, spend, period)
            if seeds:
                await self.counters.seed(seeds)

    async def ledger(self, period: str, *, flush: bool = True) -> list[tuple[str, str, str, float]]:
        """The spend ledger's sums over the current `period` (UTC calendar day, month,
        or total), per workspace, key and end user; `flush` first writes what is queued."""
        if flush:
            await asyncio.to_thread(self.records.flush, 5.0)
        since = period_start(period, datetime.now(UTC))
        return await asyncio.to_thread(self.records.store.spend, since=since)

    async def ledger_spent(self, scope: str, period: str) -> float:
        """What `scope` spent in the current `period`, as the ledger has it."""
        total = 0.0
        for workspace_id, key_id, end_user, usd in await self.ledger(period):
            if scope in scopes_for(workspace_id, key_id, end_user):
                total += usd
        return total

    async def _keep_budgets(self) -> None:
        """Re-seed now and then: a shared backend may have been flushed or restarted."""
        while True:
            await asyncio.sleep(self._ledger_interval)
            try:
                await self.seed_budgets()
            except Exception:  # noqa: BLE001 - keep the counters as they are
                log.warning("re-seeding budget counters from the ledger failed", exc_info=True)

    async def _probe(self) -> None:
        """Active health checks: a cooling deployment that answers comes back early."""
        while True:
            await asyncio.sleep(self._probe_interval)
            for dep_id in self.balancer.cooling():
                dep = self.snapshot.deployment(dep_id)
                if dep is None:
                    continue
                try:
                    provider = self.pool.get(dep.provider)
                    if await asyncio.wait_for(provider.healthy(dep), timeout=3.0):
                        self.balancer.recover(dep_id)
                except Exception:  # noqa: BLE001 - still down
                    continue

    # Calls -------------------------------------------------------------------------------

    def expand_prompt(self, workspace_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """A chat body that names a registry prompt (`"prompt": "name@alias"` plus
        `variables`) as the chat body it renders to, and the version's label."""
        ref = body.get("prompt")
        if not isinstance(ref, str) or not 0 < len(ref) <= 200:
            raise InvalidInput("'prompt' must be a name[@alias|@version] string", param="prompt")
        if "messages" in body:
            raise InvalidInput("give 'messages' or 'prompt', not both", param="prompt")
        spec = self.snapshot.prompts.get((workspace_id, ref))
        if spec is None:
            raise NotFound(
                f"the prompt '{ref}' does not exist, or has no such version or alias",
                param="prompt",
                code="prompt_not_found",
            )
        return spec.expand(body), spec.label

    def route_for(self, call: Call, model: str) -> RouteSpec:
        route = self.snapshot.route(call.actor.workspace_id, model)
        if route is None or route.kind != call.api.route_kind:
            raise NotFound(
                f"the model '{model}' does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        if not route.deployments:  # a target (a registry alias...) resolved to nothing
            raise Unavailable(
                f"route '{model}' has no model to call now: {route.problem}", retry_after=5
            )
        return route

    async def run(self, call: Call, route: RouteSpec) -> Reply | StreamReply:
        """One call end to end (see the module's docstring)."""
        snap, body = self.snapshot, call.body
        rec = Record(
            id=call.request_id,
            at=utcnow(),
            workspace_id=call.actor.workspace_id,
            key_id=call.actor.id,
            api=call.api.name,
            route=route.name,
            end_user=body.get("user") or "",
            stream=bool(body.get("stream")),
            trace_id=call.trace_id,
            span_id=call.span_id,
            parent_span_id=call.parent_span_id,
            prompt=call.prompt,
        )
        state = _Ending()
        try:
            async with self.governor.admit(  # settles on the way out, or gives it back
                snap, route, body, call.actor.workspace_id, call.actor.id, rec.end_user
            ) as admission:
                try:
                    if admission.max_output is not None and not (
                        body.get("max_tokens") or body.get("max_completion_tokens")
                    ):
                        body = {**body, "max_tokens": admission.max_output}
                    if rec.stream and call.api.stream is not None:
                        opened = await self.executor.stream(
                            snap, call.actor.workspace_id, route, call.api.stream, body
                        )
                        reply = self._streamed(call, rec, admission, opened, body, snap)
                        admission.hand_over()
                        state.streaming = True  # the stream settles and records at its end
                        return reply
                    return await self._unary(call, route, snap, body, rec, admission)
                except BaseException as exc:
                    state.failure = exc
                    raise
                finally:
                    # recorded (to the write-ahead log) before the counters settle: a
                    # crash in between leaves the ledger ahead of a shared counter,
                    # which the next seeding raises to it, never behind
                    state.finish(self, call, rec)
        except BaseException as exc:  # refused at admission: recorded too
            if state.failure is None:
                state.failure = exc
            state.finish(self, call, rec)
            raise

    async def _unary(
        self, call: Call, route: RouteSpec, snap: Snapshot, body: Body, rec: Record, adm: Admission
    ) -> Reply:
        cache_key = None
        cache_state = b"bypass"
        if route.cache_ttl > 0 and not call.no_cache:
            cache_key = _cache_key(call.actor.workspace_id, route.name, call.api.name, body)
            cached = await self.cache.get(cache_key)
            if cached is not None:
                self.metrics.cache.labels("hit").inc()
                rec.cache_hit = True
                rec.provider, rec.model = "cache", route.name
                call.output = cached
                return Reply(cached, self._headers(call, rec, b"hit"), rec)
            self.metrics.cache.labels("miss").inc()
            cache_state = b"miss"
        vector = None
        semantic_scope = ("", "")
        if cache_key is not None and route.semantic_threshold is not None:
            # similar prompts share a reply only when everything else about the call is equal
            rest = {k: v for k, v in body.items() if k != "messages"}
            semantic_scope = (
                call.actor.workspace_id,
                route.name + ":" + _cache_key("", "", call.api.name, rest),
            )
            vector = await self._embed(call, route, snap, body)
            found = None
            if vector:
                found = await asyncio.to_thread(
                    self.semantic.lookup, semantic_scope, vector, route.semantic_threshold
                )
            if found:
                self.metrics.cache.labels("semantic_hit").inc()
                rec.cache_hit = True
                rec.provider, rec.model = "semantic-cache", route.name
                call.output = found[0]
                return Reply(found[0], self._headers(call, rec, b"semantic-hit"), rec)
        outcome = await self.executor.call(
            snap, call.actor.workspace_id, route, call.api.unary, body
        )
        dep, result = outcome.deployment, outcome.result
        rec.deployment_id, rec.provider, rec.model = dep.id, dep.provider.name, dep.model
        rec.retries, rec.fallbacks = outcome.retries, outcome.fallbacks
        usage = result.get("usage") or {}
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        if not usage:
            prompt = _count_prompt(body)
            completion = sum(count_text_tokens(_choice_text(c)) for c in result.get("choices", []))
            result["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        cached_tokens = _int((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        rec.prompt_tokens, rec.completion_tokens = prompt, completion
        price = deployment_price(snap.prices, dep) or FREE
        rec.cost_usd = price.cost(prompt, completion, cached_tokens)
        adm.charge(rec.cost_usd, prompt + completion)
        payload = orjson.dumps(result)
        if cache_key is not None:
            await self.cache.set(cache_key, payload, route.cache_ttl)
        if vector:
            self.semantic.store(semantic_scope, vector, payload, route.cache_ttl)
        call.output = result
        return Reply(payload, self._headers(call, rec, cache_state), rec)

    def _streamed(
        self,
        call: Call,
        rec: Record,
        adm: Admission,
        opened: StreamOutcome,
        body: Body,
        snap: Snapshot,
    ) -> StreamReply:
        dep = opened.deployment
        rec.deployment_id, rec.provider, rec.model = dep.id, dep.provider.name, dep.model
        rec.retries, rec.fallbacks = opened.retries, opened.fallbacks
        rec.ttft_ms = (time.perf_counter() - call.started) * 1000
        price = deployment_price(snap.prices, dep) or FREE

        def ended() -> None:
            call.output = "".join(stream.text)  # what the client was sent
            self._finish(call, rec, None)

        stream = CallStream(rec, adm, opened, body, price, ended)
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamReply(
            self._headers(call, rec, b"bypass"), stream.relay(want_usage), stream.finalize, rec
        )

    async def _embed(
        self, call: Call, route: RouteSpec, snap: Snapshot, body: Body
    ) -> list[float] | None:
        """The prompt's embedding through the route's embedding route, as a call of its
        own: governed by the caller's limits and budgets, and recorded. None if
        unavailable (the semantic cache is an optimisation: it never fails a call)."""
        target = snap.route(call.actor.workspace_id, route.semantic_embedding_route)
        if target is None or target.kind != "embedding":
            return None
        inner = Call(
            actor=call.actor,
            api=EMBEDDINGS_API,
            body={"input": prompt_text(body), "model": target.name},
            no_cache=True,
            trace_id=call.trace_id,
            parent_span_id=call.span_id,
        )
        inner.request_id = call.request_id + "-embed"
        try:
            reply = await self.run(inner, target)
            assert isinstance(reply, Reply)
            vector = reply.json()["data"][0]["embedding"]
        except (ShipyardError, KeyError, IndexError, TypeError, ValueError):
            return None
        return vector if isinstance(vector, list) else None

    def _headers(self, call: Call, rec: Record, cache: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-request-id", call.request_id.encode()),
            (b"x-shipyard-trace-id", call.trace_id.encode()),
            (b"x-shipyard-route", rec.route.encode()),
            (b"x-shipyard-deployment", rec.deployment_id.encode()),
            *([(b"x-shipyard-prompt", rec.prompt.encode())] if rec.prompt else []),
            (b"x-shipyard-cost-usd", b"%.8f" % rec.cost_usd),
            (b"x-shipyard-cache", cache),
        ]
        if rec.retries:
            headers.append((b"x-shipyard-retries", b"%d" % rec.retries))
        if rec.fallbacks:
            headers.append((b"x-shipyard-fallbacks", ",".join(rec.fallbacks).encode()))
        return headers

    def _finish(self, call: Call, rec: Record, failure: BaseException | None) -> None:
        """The one place a call's record is completed and handed to the sinks, with the
        status the call ended in."""
        if isinstance(failure, UpstreamError):
            rec.status, rec.error_class = failure.status, failure.error_class.value
            rec.retries, rec.fallbacks = failure.retries, failure.fallbacks
        elif isinstance(failure, ShipyardError):
            rec.status, rec.error_class = failure.status, failure.code or openai_type(failure)
        elif isinstance(failure, asyncio.CancelledError):
            rec.status, rec.error_class = 499, "client_closed"
        elif failure is not None:
            rec.status, rec.error_class = 500, "internal"
        rec.latency_ms = (time.perf_counter() - call.started) * 1000
        for sink in self.sinks:
            try:
                sink.emit(rec, call)
            except Exception:  # noqa: BLE001 - a sink's failure must not fail the call
                log.exception("call sink %s failed", type(sink).__name__)
        self.metrics.calls.observe(rec)

    # The typed in-process call -----------------------------------------------------------

    async def chat(
        self, request: ChatRequest, *, actor: Actor, trace: tuple[str, str] = ("", "")
    ) -> ChatResult:
        """A chat completion without HTTP, with the same checks, governance and record
        as `/v1/chat/completions` (the actor's limits and budgets apply). `trace`:
        (trace id, parent span id) the call's span joins, like a `traceparent`."""
        call, route = self._call(request.body(stream=False), actor, request.prompt, trace)
        reply = await self.run(call, route)
        assert isinstance(reply, Reply) and reply.record is not None
        cache = dict(reply.headers).get(b"x-shipyard-cache", b"bypass").decode()
        rec = reply.record
        return ChatResult(
            reply.json(),
            call.request_id,
            rec.route,
            rec.deployment_id,
            rec.cost_usd,
            cache,
            trace_id=call.trace_id,
            latency_ms=rec.latency_ms,
        )

    async def embed(self, texts: list[str], *, model: str, actor: Actor) -> EmbedResult:
        """Embeddings without HTTP, governed and recorded like `/v1/embeddings`."""
        if not actor.can("gateway:call"):
            raise PermissionDenied(f"the {actor.role.value} role cannot call the gateway")
        body: Body = {"model": model, "input": list(texts)}
        name = EMBEDDINGS_API.check(body)
        call = Call(actor=actor, api=EMBEDDINGS_API, body=body)
        reply = await self.run(call, self.route_for(call, name))
        assert isinstance(reply, Reply) and reply.record is not None
        data = sorted(reply.json().get("data") or [], key=lambda d: d.get("index", 0))
        vectors = [list(d["embedding"]) for d in data]
        if len(vectors) != len(texts):
            raise UpstreamError(
                f"the embeddings route answered {len(vectors)} vectors for {len(texts)} texts",
                error_class=ErrorClass.malformed,
            )
        return EmbedResult(vectors, call.request_id, reply.record.route, reply.record.cost_usd)

    async def chat_stream(
        self, request: ChatRequest, *, actor: Actor, trace: tuple[str, str] = ("", "")
    ) -> AsyncIterator[Body]:
        """`chat.completion.chunk` dicts of a streamed chat completion (the last carries
        `usage`); settled and recorded when the stream ends or is closed early."""
        call, route = self._call(request.body(stream=True), actor, request.prompt, trace)
        reply = await self.run(call, route)
        assert isinstance(reply, StreamReply)
        try:
            async for chunk in reply.chunks:
                yield chunk
        finally:
            await reply.finalize()

    def _call(
        self, body: Body, actor: Actor, prompt: str = "", trace: tuple[str, str] = ("", "")
    ) -> tuple[Call, RouteSpec]:
        if not actor.can("gateway:call"):
            raise PermissionDenied(f"the {actor.role.value} role cannot call the gateway")
        model = CHAT_API.check(body)
        call = Call(
            actor=actor,
            api=CHAT_API,
            body=body,
            prompt=prompt,
            trace_id=trace[0],
            parent_span_id=trace[1],
        )
        return call, self.route_for(call, model)


class CallStream:
    """A streaming call after its first chunk: relays the rest, keeps what it needs to
    count tokens, and settles once, however the stream ends (done, upstream error,
    client gone, or never read)."""

    def __init__(
        self,
        rec: Record,
        adm: Admission,
        opened: StreamOutcome,
        body: Body,
        price: Price,
        on_end: Callable[[], None],
    ) -> None:
        self.rec, self.adm, self.body, self.price, self.on_end = rec, adm, body, price, on_end
        self.first, self.rest = opened.first, opened.rest
        self.text: list[str] = []
        self.usage: Body | None = None
        rec.status, rec.error_class = 499, "client_closed"  # until the stream ends well
        self._done = False

    async def relay(self, want_usage: bool) -> AsyncIterator[Body]:
        try:
            chunk: Body | None = self.first
            while chunk is not None:
                self._observe(chunk)
                if chunk.get("choices") or want_usage:
                    yield chunk
                chunk = await anext(self.rest, None)
            self.rec.status, self.rec.error_class = 200, ""
        except UpstreamError as exc:
            self.rec.status, self.rec.error_class = exc.status, exc.error_class.value
            raise
        finally:
            await self.finalize()

    def _observe(self, chunk: Body) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            piece = _delta_text(choice)
            if piece:
                self.text.append(piece)

    async def finalize(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self.rest.aclose()
        finally:
            rec = self.rec
            try:
                if self.usage:
                    prompt = _int(self.usage.get("prompt_tokens"))
                    completion = _int(self.usage.get("completion_tokens"))
                else:  # cut off, or a provider without usage: count with the tokenizer
                    prompt = _count_prompt(self.body)
                    completion = count_text_tokens("".join(self.text))
                rec.prompt_tokens, rec.completion_tokens = prompt, completion
                rec.cost_usd = self.price.cost(prompt, completion)
                self.adm.charge(rec.cost_usd, prompt + completion)
            except Exception:  # noqa: BLE001 - counting failed: charge the worst case
                log.exception("counting a stream's tokens failed")
                worst = max((amount for _, amount, _ in self.adm.reserved), default=0.0)
                rec.cost_usd = worst
                self.adm.charge(worst, 0)
            finally:
                try:
                    self.on_end()  # the record, before the counters settle (see run)
                finally:
                    await asyncio.shield(self.adm.governor.settle(self.adm))


@dataclass
class _Ending:
    """How `Gateway.run` ended, so that its record is finished exactly once."""

    failure: BaseException | None = None
    streaming: bool = False
    done: bool = False

    def finish(self, gateway: Gateway, call: Call, rec: Record) -> None:
        if not self.streaming and not self.done:
            self.done = True
            gateway._finish(call, rec, self.failure)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _cache_key(workspace_id: str, route: str, api: str, body: Body) -> str:
    material = {k: v for k, v in body.items() if k not in ("user", "stream_options")}
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{workspace_id}:{route}:{api}:{digest}"


def _choice_text(choice: Body) -> str:
    msg = choice.get("message") or {}
    parts = [choice.get("text") or "", msg.get("content") or ""]
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        parts.append((fn.get("name") or "") + (fn.get("arguments") or ""))
    return "".join(p for p in parts if isinstance(p, str))


def _delta_text(choice: Body) -> str:
    delta = choice.get("delta") or {}
    parts = [choice.get("text") or "", delta.get("content") or ""]
    for tc in delta.get("tool_calls") or ():
        fn = tc.get("function") or {}
        parts.append((fn.get("name") or "") + (fn.get("arguments") or ""))
    return "".join(p for p in parts if isinstance(p, str))


def _count_prompt(body: Body) -> int:
    texts: list[str] = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and _is_str(p.get("text"))]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts += [p for p in prompt if isinstance(p, str)]
    inp = body.get("input")
    if isinstance(inp, str):
        texts.append(inp)
    elif isinstance(inp, list):
        texts += [p for p in inp if isinstance(p, str)]
    return count_text_tokens("\n".join(texts))
