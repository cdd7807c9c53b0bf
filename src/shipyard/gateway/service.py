"""The Gateway: holds the configuration snapshot, providers, balancer, governor, cache
and record writer, and runs one call end to end. No FastAPI here; `asgi.py` is the HTTP
face, `anthropic_api.py` the Anthropic-shaped one."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from shipyard.gateway import state as gw_state
from shipyard.gateway.balancer import Balancer
from shipyard.gateway.cost import count_text_tokens, price_for
from shipyard.gateway.crypto import SecretBox
from shipyard.gateway.errors import GatewayError, ModelNotFound, UpstreamFailure
from shipyard.gateway.executor import Executor, RetryPolicy
from shipyard.gateway.governance import Admission, Governor
from shipyard.gateway.limits import InProcessBackend, LimitBackend
from shipyard.gateway.records import Record, RecordWriter
from shipyard.gateway.semantic import SemanticCache, prompt_text
from shipyard.gateway.specs import RouteSpec
from shipyard.gateway.state import ProviderPool, Snapshot
from shipyard.identity.actor import Actor
from shipyard.store import Database, utcnow

log = logging.getLogger("shipyard.gateway")
Body = dict[str, Any]
OPS = {
    "chat": ("chat", "chat_stream"),
    "messages": ("chat", "chat_stream"),
    "completions": ("completion", "completion_stream"),
    "embeddings": ("embeddings", None),
}


@dataclass
class Reply:
    """A finished call: the JSON body and the Shipyard headers."""

    body: Body | bytes
    headers: list[tuple[bytes, bytes]]
    status: int = 200


@dataclass
class StreamReply:
    headers: list[tuple[bytes, bytes]]
    chunks: AsyncIterator[Body]
    # settles the budget and writes the record; idempotent, and the HTTP layer calls it
    # even when it never started reading `chunks`
    finalize: Callable[[], Awaitable[None]]


_ids = random.Random(secrets.randbits(128))  # request and trace ids need no crypto, just spread


def _new_ids() -> tuple[str, str]:
    return f"req_{_ids.getrandbits(96):024x}", f"{_ids.getrandbits(128):032x}"


@dataclass
class Call:
    """What one request carries through the gateway."""

    actor: Actor
    api: str  # chat | completions | embeddings | messages
    body: Body
    no_cache: bool = False
    request_id: str = ""
    trace_id: str = ""
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id, self.trace_id = _new_ids()


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "shipyard_gateway_requests",
            "Gateway calls by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "shipyard_gateway_request_duration_seconds",
            "Gateway call latency by route.",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.tokens = Counter(
            "shipyard_gateway_tokens",
            "Tokens by route and direction.",
            ["route", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "shipyard_gateway_cost_usd", "Cost in USD by route.", ["route"], registry=registry
        )
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
        self._children: dict[tuple[str, int], tuple[Any, ...]] = {}

    def for_route(self, route: str, status: int) -> tuple[Any, ...]:
        """Labelled children, looked up once per (route, status): `.labels()` costs more
        than the increment itself."""
        key = (route, status)
        found = self._children.get(key)
        if found is None:
            if len(self._children) > 10_000:
                self._children.clear()
            found = self._children[key] = (
                self.requests.labels(route, str(status)),
                self.latency.labels(route),
                self.tokens.labels(route, "input"),
                self.tokens.labels(route, "output"),
                self.cost.labels(route),
            )
        return found


class Gateway:
    def __init__(
        self,
        *,
        db: Database,
        box: SecretBox,
        registry: CollectorRegistry,
        backend: LimitBackend | None = None,
        retry: RetryPolicy | None = None,
        balancer: Balancer | None = None,
        local_threads: int | None = None,
        reload_interval: float = 2.0,
        probe_interval: float = 5.0,
    ) -> None:
        self.db = db
        self.box = box
        self.metrics = GatewayMetrics(registry)
        self.backend = backend or InProcessBackend()
        self.governor = Governor(self.backend)
        self.pool = ProviderPool()
        self.balancer = balancer or Balancer()
        self.executor = Executor(self.pool, self.balancer, retry or RetryPolicy())
        self.records = RecordWriter(db, self.metrics.records_dropped, self.metrics.records_written)
        self.snapshot = Snapshot()
        self.semantic = SemanticCache()
        self._builtin_options: dict[str, object] = {}
        if local_threads:
            self._builtin_options["n_threads"] = local_threads
        self._reload_interval = reload_interval
        self._probe_interval = probe_interval
        self._tasks: list[asyncio.Task[None]] = []

    # Life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reload()
        self.records.start()
        self._tasks = [
            asyncio.create_task(self._watch_config()),
            asyncio.create_task(self._probe()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        await self.pool.close()
        await self.backend.close()
        await asyncio.to_thread(self.records.stop)

    async def reload(self) -> None:
        self.snapshot = await asyncio.to_thread(
            gw_state.load, self.db, self.box, self._builtin_options
        )

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

    async def _probe(self) -> None:
        """Active health checks: a cooling deployment that answers comes back early."""
        while True:
            await asyncio.sleep(self._probe_interval)
            for dep_id in self.balancer.cooling():
                dep = self._deployment(dep_id)
                probe = getattr(self.pool.get(dep.provider), "healthy", None) if dep else None
                if probe is None:
                    continue
                try:
                    if await asyncio.wait_for(probe(dep), timeout=3.0):
                        self.balancer.recover(dep_id)
                except Exception:  # noqa: BLE001 - still down
                    continue

    def _deployment(self, dep_id: str) -> Any:
        for route in self.snapshot.routes.values():
            for dep in route.deployments:
                if dep.id == dep_id:
                    return dep
        return None

    # Calls -------------------------------------------------------------------------------

    def route_for(self, call: Call, model: str, kind: str) -> RouteSpec:
        route = self.snapshot.route(call.actor.workspace_id, model)
        if route is None or route.kind != kind:
            raise ModelNotFound(
                f"the model '{model}' does not exist or you do not have access to it", param="model"
            )
        return route

    async def run(self, call: Call, route: RouteSpec) -> Reply | StreamReply:
        body = call.body
        end_user = body.get("user") or ""
        rec = Record(
            id=call.request_id,
            at=utcnow(),
            workspace_id=call.actor.workspace_id,
            key_id=call.actor.id,
            api=call.api,
            route=route.name,
            end_user=end_user,
            stream=bool(body.get("stream")),
        )
        snap = self.snapshot
        try:
            adm = await self.governor.admit(
                snap, route, body, call.actor.workspace_id, call.actor.id, end_user
            )
        except GatewayError as exc:
            self._finish(call, rec, status=exc.status, error=exc.code or exc.type)
            raise
        upstream = body
        if adm.max_output is not None and not (
            body.get("max_tokens") or body.get("max_completion_tokens")
        ):
            upstream = {**body, "max_tokens": adm.max_output}
        try:
            if body.get("stream") and OPS[call.api][1]:
                return await self._stream(call, route, snap, upstream, rec, adm)
            return await self._unary(call, route, snap, upstream, rec, adm)
        except GatewayError as exc:
            await self.governor.release(adm)
            self._finish(
                call,
                rec,
                status=exc.status,
                error=getattr(exc, "error_class", None) or exc.code or exc.type,
            )
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self.governor.release(adm))
            self._finish(call, rec, status=499, error="client_closed")
            raise
        except BaseException:
            await self.governor.release(adm)
            self._finish(call, rec, status=500, error="internal")
            raise

    async def _unary(
        self, call: Call, route: RouteSpec, snap: Snapshot, body: Body, rec: Record, adm: Admission
    ) -> Reply:
        cache_key = None
        cache_state = b"bypass"
        if route.cache_ttl > 0 and not call.no_cache:
            cache_key = _cache_key(call.actor.workspace_id, route.name, call.api, body)
            cached = await self.backend.cache_get(cache_key)
            if cached is not None:
                self.metrics.cache.labels("hit").inc()
                await self.governor.release(adm)
                rec.cache_hit = True
                rec.provider, rec.model = "cache", route.name
                self._finish(call, rec, status=200)
                return Reply(cached, self._headers(call, rec, b"hit"))
            self.metrics.cache.labels("miss").inc()
            cache_state = b"miss"
        vector = None
        # similar prompts share a reply only when everything else about the call is equal
        semantic_scope = (
            call.actor.workspace_id,
            route.name
            + ":"
            + _cache_key("", "", call.api, {k: v for k, v in body.items() if k != "messages"}),
        )
        if cache_key is not None and route.semantic_threshold is not None:
            vector = await self._embed(call, route, snap, body)
            found = vector and await asyncio.to_thread(
                self.semantic.lookup, semantic_scope, vector, route.semantic_threshold
            )
            if found:
                self.metrics.cache.labels("semantic_hit").inc()
                await self.governor.release(adm)
                rec.cache_hit = True
                rec.provider, rec.model = "semantic-cache", route.name
                self._finish(call, rec, status=200)
                return Reply(found[0], self._headers(call, rec, b"semantic-hit"))
        dep, result = await self.executor.call(
            snap, call.actor.workspace_id, route, OPS[call.api][0], body, rec
        )
        rec.deployment_id, rec.provider, rec.model = dep.id, dep.provider.name, dep.model
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
        rec.cost_usd = price_for(snap.prices, dep.model).cost(prompt, completion, cached_tokens)
        await self.governor.settle(adm, rec.cost_usd, prompt + completion)
        payload = orjson.dumps(result)
        if cache_key is not None:
            await self.backend.cache_set(cache_key, payload, route.cache_ttl)
        if vector:
            self.semantic.store(semantic_scope, vector, payload, route.cache_ttl)
        self._finish(call, rec, status=200)
        return Reply(payload, self._headers(call, rec, cache_state))

    async def _stream(
        self, call: Call, route: RouteSpec, snap: Snapshot, body: Body, rec: Record, adm: Admission
    ) -> StreamReply:
        dep, first, rest = await self.executor.stream(
            snap, call.actor.workspace_id, route, OPS[call.api][1], body, rec
        )
        rec.deployment_id, rec.provider, rec.model = dep.id, dep.provider.name, dep.model
        rec.ttft_ms = (time.perf_counter() - call.started) * 1000
        state = _StreamState(self, call, rec, adm, rest, body, price_for(snap.prices, dep.model))
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamReply(
            self._headers(call, rec, b"bypass"),
            self._relay(state, first, want_usage),
            state.finalize,
        )

    async def _relay(
        self, state: _StreamState, first: Body, want_usage: bool
    ) -> AsyncIterator[Body]:
        try:
            chunk: Body | None = first
            while chunk is not None:
                state.observe(chunk)
                if chunk.get("choices") or want_usage:
                    yield chunk
                chunk = await anext(state.rest, None)
            state.status = 200
        except UpstreamFailure as exc:
            state.status, state.error = exc.status, exc.error_class.value
            raise
        finally:
            await state.finalize()

    async def _embed(
        self, call: Call, route: RouteSpec, snap: Snapshot, body: Body
    ) -> list[float] | None:
        """The prompt's embedding through the route's embedding route; None if unavailable
        (the semantic cache is an optimisation: it never fails a call)."""
        target = snap.route(call.actor.workspace_id, route.semantic_embedding_route)
        if target is None or target.kind != "embedding":
            return None
        scratch = Record(id="", at=utcnow(), workspace_id="", key_id="", api="embeddings")
        try:
            _, out = await self.executor.call(
                snap,
                call.actor.workspace_id,
                target,
                "embeddings",
                {"input": prompt_text(body), "model": target.name},
                scratch,
            )
            vector = out["data"][0]["embedding"]
        except (GatewayError, KeyError, IndexError, TypeError):
            return None
        return vector if isinstance(vector, list) else None

    def _headers(self, call: Call, rec: Record, cache: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-request-id", call.request_id.encode()),
            (b"x-shipyard-trace-id", call.trace_id.encode()),
            (b"x-shipyard-route", rec.route.encode()),
            (b"x-shipyard-deployment", rec.deployment_id.encode()),
            (b"x-shipyard-cost-usd", f"{rec.cost_usd:.8f}".encode()),
            (b"x-shipyard-cache", cache),
            (b"x-shipyard-retries", str(rec.retries).encode()),
            (b"x-shipyard-fallbacks", ",".join(rec.fallbacks).encode()),
        ]

    def _finish(self, call: Call, rec: Record, *, status: int, error: str = "") -> None:
        rec.status = status
        rec.error_class = str(error or "")
        rec.latency_ms = (time.perf_counter() - call.started) * 1000
        self.records.submit(rec)
        requests, latency, tokens_in, tokens_out, cost = self.metrics.for_route(rec.route, status)
        requests.inc()
        latency.observe(rec.latency_ms / 1000)
        if rec.prompt_tokens:
            tokens_in.inc(rec.prompt_tokens)
        if rec.completion_tokens:
            tokens_out.inc(rec.completion_tokens)
        if rec.cost_usd:
            cost.inc(rec.cost_usd)


class _StreamState:
    """What a stream has produced so far, and its one-time settlement."""

    def __init__(
        self,
        gateway: Gateway,
        call: Call,
        rec: Record,
        adm: Admission,
        rest: Any,
        body: Body,
        price: Any,
    ) -> None:
        self.gateway, self.call, self.rec, self.adm = gateway, call, rec, adm
        self.rest, self.body, self.price = rest, body, price
        self.text: list[str] = []
        self.usage: Body | None = None
        self.status, self.error = 499, "client_closed"  # until the stream ends well
        self._done = False

    def observe(self, chunk: Body) -> None:
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
        rec, gw = self.rec, self.gateway
        try:
            await self.rest.aclose()
        finally:
            if self.usage:
                prompt = _int(self.usage.get("prompt_tokens"))
                completion = _int(self.usage.get("completion_tokens"))
            else:  # cut off, or a provider without usage: count with the tokenizer
                prompt = _count_prompt(self.body)
                completion = count_text_tokens("".join(self.text))
            rec.prompt_tokens, rec.completion_tokens = prompt, completion
            rec.cost_usd = self.price.cost(prompt, completion)
            try:
                await asyncio.shield(
                    gw.governor.settle(self.adm, rec.cost_usd, prompt + completion)
                )
            finally:
                gw._finish(self.call, rec, status=self.status, error=self.error)


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
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict)]
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
