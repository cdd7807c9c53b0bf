"""The pipelines service: compiled versions kept in memory, invocations (unary and
streamed), their spans, and the gateway's `pipeline:` models.

A reference (`name`, `name@3`, `name@production`, `release@production/name`) is read
from the registry once per gateway configuration version (every new version or alias
move bumps it) and kept compiled; an invocation does no configuration lookup.

Spans: one trace per invocation (the caller's, from `traceparent`, or a new one): a root
span for the pipeline (OpenInference CHAIN), a span per step execution under it (a map's
or branch's steps under theirs), and under a model step the gateway call's own span.
Retrieval spans carry `retrieval.documents.N.document.{id,score,content}`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from shipyard.gateway.core.call import Call, ChatRequest, Reply, StreamReply, new_ids
from shipyard.identity.actor import Actor
from shipyard.pipelines.engine import Run, StepRecord, cut, new_span_id
from shipyard.pipelines.spec import STEPS_GROUP, Pipeline, compile_spec
from shipyard.pipelines.steps import TOOLS_GROUP

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.tracing.spans import Span

log = logging.getLogger(__name__)
PREFIX = "pipeline"  # `model: "pipeline:name@alias"` on /v1/chat/completions
KB_TTL_S = 5.0  # a knowledge base's row, as retrieve steps read it
MAX_CACHED = 4096
MAX_LISTED = 1000  # pipelines listed on GET /v1/models
MAX_RUNNING = 512  # invocations at once on a replica; past it a 503 with Retry-After


@dataclass
class Invocation:
    pipeline: str  # name@vN
    output: Any
    trace_id: str
    ms: float
    steps: list[StepRecord]
    usage: dict[str, int]
    cost_usd: float = 0.0  # the model steps' calls


class Pipelines:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._types: dict[str, Any] = {}
        self._compiled: dict[tuple[str, str], Pipeline] = {}
        self._version = -1
        self._kbs: dict[tuple[str, str], tuple[float, Any]] = {}
        self._tools: dict[str, Callable[..., Any]] = {}
        self.running = 0

    async def start(self) -> None:
        gateway = self.platform.services["gateway"]
        gateway.virtual[PREFIX] = self.serve_chat
        gateway.virtual_models[PREFIX] = self.models

    async def stop(self) -> None:
        gateway = self.platform.services.get("gateway")
        if gateway is not None:
            gateway.virtual.pop(PREFIX, None)
            gateway.virtual_models.pop(PREFIX, None)

    def models(self, actor: Actor) -> list[dict[str, Any]]:
        """`GET /v1/models`'s entries for the workspace's pipelines, for a caller who may
        invoke them: `pipeline:name` (the latest version) and `pipeline:name@alias` for
        each alias, the newest pipelines first (at most `MAX_LISTED`)."""
        if not actor.can("pipelines:invoke"):
            return []
        from sqlalchemy import select

        from shipyard.registry import assets as registry
        from shipyard.registry.tables import AliasRow

        with self.platform.db.transaction() as s:
            found = registry.list_assets(s, workspace_id=actor.workspace_id, kind=PREFIX)
            found.sort(key=lambda a: a.created_at, reverse=True)  # stable: by name within
            rows = [(a.id, a.name, a.description, a.created_at) for a in found[:MAX_LISTED]]
            aliases: dict[str, list[str]] = {}
            for asset_id, alias in s.execute(
                select(AliasRow.asset_id, AliasRow.alias)
                .where(AliasRow.asset_id.in_([r[0] for r in rows]))
                .order_by(AliasRow.alias)
            ):
                aliases.setdefault(asset_id, []).append(alias)
        out = []
        for asset_id, name, description, created in rows:
            for ref in (name, *(f"{name}@{a}" for a in aliases.get(asset_id, ()))):
                out.append(
                    {
                        "id": f"{PREFIX}:{ref}",
                        "object": "model",
                        "created": int(created.timestamp()),
                        "owned_by": "shipyard",
                        "kind": PREFIX,
                        "description": description,
                    }
                )
        return out

    # compiling ---------------------------------------------------------------------------

    def step_type(self, name: str) -> Any:
        found = self._types.get(name)
        if found is None:
            found = self._types[name] = self.platform.plugins.load(STEPS_GROUP, name)()
        return found

    def compile(self, spec: Any, *, label: str = "draft") -> Pipeline:
        pipeline = compile_spec(spec, label=label, load_step=self.step_type)
        for step in pipeline.steps.values():
            check = getattr(step.impl, "check", None)
            if check is not None:
                try:
                    check(step.config, self.platform.plugins)
                except InvalidInput as exc:
                    raise InvalidInput(f"step '{step.id}': {exc.detail}", param="spec") from None
        return pipeline

    def get(self, workspace_id: str, ref: str) -> Pipeline:
        """The compiled version `ref` names now (read once per configuration version)."""
        version = self.platform.services["gateway"].snapshot.version
        if version != self._version:
            self._compiled, self._version = {}, version
        key = (workspace_id, ref)
        found = self._compiled.get(key)
        if found is None:
            found = self._load(workspace_id, ref)
            if len(self._compiled) >= MAX_CACHED:
                self._compiled.clear()
            self._compiled[key] = found
        return found

    def _load(self, workspace_id: str, ref: str) -> Pipeline:
        from shipyard.registry import assets

        with self.platform.db.transaction() as s:
            asset, row = assets.resolve_member(
                s, workspace_id=workspace_id, kind="pipeline", raw=ref, param="pipeline"
            )
            label, body = f"{asset.name}@v{row.number}", dict(row.body)
        return self.compile(body["spec"], label=label)

    # invoking ----------------------------------------------------------------------------

    async def invoke(
        self,
        actor: Actor,
        ref: str,
        inputs: dict[str, Any],
        *,
        trace: tuple[str, str] = ("", ""),
    ) -> Invocation:
        pipeline = await self._pipeline(actor, ref)
        run = self._run(actor, pipeline, inputs, trace)
        started = time.time_ns()
        self._admit()
        try:
            await run.result()
        finally:
            self.running -= 1
            self._emit(actor, run, trace[1], started, failed=run.output is None)
        return self._invocation(run, started)

    def _admit(self) -> None:
        if self.running >= MAX_RUNNING:
            raise Unavailable("too many pipeline invocations at once; retry later", retry_after=1)
        self.running += 1

    async def stream(
        self, actor: Actor, ref: str, inputs: dict[str, Any], *, trace: tuple[str, str] = ("", "")
    ) -> Streamed:
        """The run (checked before anything streams) and its output's text deltas; the
        spans are written when the stream ends, however it ends (`aclose` ends one that
        never started)."""
        pipeline = await self._pipeline(actor, ref)
        run = self._run(actor, pipeline, inputs, trace)
        self._admit()
        return Streamed(self, actor, run, trace[1])

    async def _pipeline(self, actor: Actor, ref: str) -> Pipeline:
        if not actor.can("pipelines:invoke"):
            raise PermissionDenied(f"the {actor.role.value} role cannot invoke pipelines")
        if not isinstance(ref, str) or not 0 < len(ref) <= 300:
            raise InvalidInput("pipeline: must be a name[@version|@alias]", param="pipeline")
        key = (actor.workspace_id, ref)
        version = self.platform.services["gateway"].snapshot.version
        found = self._compiled.get(key) if version == self._version else None
        if found is not None:
            return found
        return await asyncio.to_thread(self.get, actor.workspace_id, ref)

    def _run(
        self, actor: Actor, pipeline: Pipeline, inputs: dict[str, Any], trace: tuple[str, str]
    ) -> Run:
        trace_id = trace[0] or new_ids()[1]
        return Run(pipeline, inputs, Bound(self, actor), trace_id=trace_id, root_span=new_span_id())

    def _invocation(self, run: Run, started_ns: int) -> Invocation:
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for r in run.records:
            usage["prompt_tokens"] += int(r.attributes.get("gen_ai.usage.input_tokens") or 0)
            usage["completion_tokens"] += int(r.attributes.get("gen_ai.usage.output_tokens") or 0)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        cost = sum(float(r.attributes.get("shipyard.cost_usd") or 0) for r in run.records)
        return Invocation(
            pipeline=run.pipeline.label,
            output=run.output,
            trace_id=run.trace_id,
            ms=(time.time_ns() - started_ns) / 1e6,
            steps=run.records,
            usage=usage,
            cost_usd=cost,
        )

    # spans -------------------------------------------------------------------------------

    def _emit(self, actor: Actor, run: Run, parent: str, started_ns: int, *, failed: bool) -> None:
        tracing = self.platform.services.get("tracing")
        if tracing is None:
            return
        try:
            tracing.submit(spans(actor, run, parent, started_ns, failed=failed))
        except Exception:  # noqa: BLE001 - tracing must not fail the invocation
            log.exception("pipeline spans for %s were not written", run.pipeline.label)

    # the gateway's `pipeline:` models ------------------------------------------------------

    async def serve_chat(self, call: Call, ref: str) -> Reply | StreamReply:
        """`/v1/chat/completions` with `model: "pipeline:<ref>"`: the last user message
        (and `variables`) are the inputs; the output step's text is the reply, streamed
        when asked for."""
        body = call.body
        pipeline = await self._pipeline(call.actor, ref)
        inputs = chat_inputs(pipeline, body)
        trace = (call.trace_id, call.parent_span_id)
        model = f"{PREFIX}:{ref}"
        created = int(time.time())
        cid = f"chatcmpl-{call.request_id}"
        headers = [
            (b"x-request-id", call.request_id.encode()),
            (b"x-shipyard-pipeline", pipeline.label.encode()),
        ]
        if not body.get("stream"):
            done = await self.invoke(call.actor, ref, inputs, trace=trace)
            text = done.output if isinstance(done.output, str) else cut(done.output, 10**9)
            reply = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": done.usage,
            }
            return Reply(reply, [*headers, (b"x-shipyard-trace-id", done.trace_id.encode())])
        streamed = await self.stream(call.actor, ref, inputs, trace=trace)
        run = streamed.run
        deltas = streamed.__aiter__()
        try:  # the steps before the output's first text run now: a failure is a status
            first: str | None = await deltas.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await streamed.aclose()
            raise
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def chunks() -> AsyncGenerator[dict[str, Any], None]:
            yield chunk({"role": "assistant", "content": ""})
            if first is not None:
                yield chunk({"content": first})
                async for text in deltas:
                    yield chunk({"content": text})
            yield chunk({}, "stop")
            if want_usage:
                usage = self._invocation(run, time.time_ns()).usage
                yield {**chunk({}), "choices": [], "usage": usage}

        stream = chunks()

        async def finalize() -> None:
            await stream.aclose()
            await streamed.aclose()

        headers.append((b"x-shipyard-trace-id", run.trace_id.encode()))
        return StreamReply(headers, stream, finalize)


class Streamed:
    """A streamed invocation: iterate it for text deltas; admitted until it ends."""

    def __init__(self, service: Pipelines, actor: Actor, run: Run, parent: str) -> None:
        self.service, self.actor, self.run, self.parent = service, actor, run, parent
        self.started = time.time_ns()
        self._open = True
        self._deltas = self._relay()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas

    async def _relay(self) -> AsyncGenerator[str, None]:
        ok = False
        try:
            async for delta in self.run.stream():
                yield delta
            ok = True
        finally:
            self._end(ok)

    def _end(self, ok: bool) -> None:
        if self._open:
            self._open = False
            self.service.running -= 1
            self.service._emit(self.actor, self.run, self.parent, self.started, failed=not ok)

    async def aclose(self) -> None:
        await self._deltas.aclose()
        self._end(False)  # never started, or closed early


class Bound:
    """The engine's `Services`, as one actor: every call is governed as theirs."""

    def __init__(self, service: Pipelines, actor: Actor) -> None:
        self.service = service
        self.actor = actor
        self.platform = service.platform

    async def chat(self, request: ChatRequest, trace: tuple[str, str]) -> Any:
        return await self.platform.services["gateway"].chat(request, actor=self.actor, trace=trace)

    async def chat_stream(self, request: ChatRequest, trace: tuple[str, str]) -> AsyncIterator[Any]:
        gateway = self.platform.services["gateway"]
        async for chunk in gateway.chat_stream(request, actor=self.actor, trace=trace):
            yield chunk

    async def search(self, knowledge_base: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        from shipyard.retrieval.schemas import SearchIn

        if not self.actor.can("kb:search"):
            raise PermissionDenied(
                f"the {self.actor.role.value} role cannot search knowledge bases"
            )
        retrieval = self.platform.services.get("retrieval")
        if retrieval is None:
            raise NotFound("retrieval is not installed")
        try:
            body = SearchIn.model_validate(query)
        except ValueError as exc:
            last = str(exc).splitlines()[-1][:200]
            raise InvalidInput(f"the search is invalid: {last}") from None
        row = await self._kb(knowledge_base)
        hits: list[dict[str, Any]] = await retrieval.search(row, body, self.actor)
        return hits

    async def _kb(self, name: str) -> Any:
        key = (self.actor.workspace_id, name)
        now = time.monotonic()
        found = self.service._kbs.get(key)
        if found is not None and now - found[0] < KB_TTL_S:
            return found[1]

        def load() -> Any:
            from shipyard.retrieval import kb

            with self.platform.db.transaction() as s:
                row = kb.get(s, self.actor.workspace_id, name)
                s.expunge(row)
                return row

        row = await asyncio.to_thread(load)
        if len(self.service._kbs) >= MAX_CACHED:
            self.service._kbs.clear()
        self.service._kbs[key] = (now, row)
        return row

    async def prompt(self, ref: str, variables: dict[str, Any]) -> dict[str, Any]:
        gateway = self.platform.services["gateway"]
        spec = gateway.snapshot.prompts.get((self.actor.workspace_id, ref))
        if spec is None:
            raise NotFound(f"the prompt '{ref[:200]}' does not exist, or has no such version")
        expanded = await asyncio.to_thread(spec.expand, {"variables": variables, "model": ""})
        default = (getattr(spec, "body", None) or {}).get("model")
        messages = expanded.pop("messages")
        expanded.pop("model", None)
        return {"messages": messages, "model": default, "params": expanded, "prompt": spec.label}

    def tool(self, name: str) -> Callable[..., Any]:
        found = self.service._tools.get(name)
        if found is None:
            try:
                found = self.platform.plugins.load(TOOLS_GROUP, name)
            except KeyError:
                raise NotFound(f"no tool is registered as '{name[:128]}'") from None
            self.service._tools[name] = found
        return found


def chat_inputs(pipeline: Pipeline, body: dict[str, Any]) -> dict[str, Any]:
    """A chat body's inputs: `variables`, and the last user message's text as the
    pipeline's chat input."""
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        raise InvalidInput("variables: must be an object", param="variables")
    inputs = dict(variables)
    name = pipeline.chat_input
    if name is not None and name not in inputs:
        text = last_user_text(body.get("messages") or [])
        if text is None:
            raise InvalidInput(
                f"messages: {pipeline.label} reads its '{name}' input from a user message",
                param="messages",
            )
        inputs[name] = text
    return inputs


def last_user_text(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [p.get("text", "") for p in content if isinstance(p, dict)]
                return "".join(p for p in parts if isinstance(p, str))
    return None


def spans(actor: Actor, run: Run, parent: str, started_ns: int, *, failed: bool) -> list[Span]:
    """The invocation's spans: the pipeline's root span and one per step execution."""
    from shipyard.tracing.spans import Span

    pipeline = run.pipeline
    ended = time.time_ns()
    error = next((r.error for r in run.records if r.status == "error"), "")
    root = Span(
        workspace_id=actor.workspace_id,
        trace_id=run.trace_id,
        span_id=run.root_span,
        parent_id=parent,
        name=f"pipeline {pipeline.label}",
        kind="server",
        start_ns=started_ns,
        end_ns=ended,
        status="error" if failed else "ok",
        status_message=error[:500] if failed else "",
        service="shipyard-pipelines",
        operation="chain",
        key_id=actor.id,
        input=cut(run.inputs),
        output="" if run.output is None else cut(run.output),
        attributes={
            "openinference.span.kind": "CHAIN",
            "shipyard.pipeline": pipeline.label,
            "input.value": cut(run.inputs),
            "output.value": "" if run.output is None else cut(run.output),
        },
        resource={"service.name": "shipyard-pipelines"},
    )
    out = [root]
    for r in run.records:
        step = pipeline.steps[r.step]
        kind = str(step.impl.span_kind)
        attributes = {
            "openinference.span.kind": kind,
            "shipyard.pipeline": pipeline.label,
            "shipyard.pipeline.step": r.step,
            "shipyard.pipeline.step_type": r.type,
            "shipyard.pipeline.attempts": r.attempts,
            **r.attributes,
        }
        if r.item is not None:
            attributes["shipyard.pipeline.item"] = r.item
        attributes.setdefault("input.value", r.input)
        attributes["output.value"] = r.output
        out.append(
            Span(
                workspace_id=actor.workspace_id,
                trace_id=run.trace_id,
                span_id=r.span_id,
                parent_id=r.parent_id,
                name=f"{r.type} {r.step}",
                kind="internal",
                start_ns=r.start_ns,
                end_ns=r.end_ns or ended,
                status="error" if r.status == "error" else "ok",
                status_message=r.error[:500],
                service="shipyard-pipelines",
                operation=kind.lower(),
                key_id=actor.id,
                input=r.input,
                output=r.output,
                attributes=attributes,
                resource={"service.name": "shipyard-pipelines"},
            )
        )
    return out
