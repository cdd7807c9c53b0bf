"""The built-in step types (the `shipyard.pipeline_steps` entry points).

A step type has a `config_model` (the step's own fields), an `output_type`, `expects`
(field -> the type a reference in that field must give), `span_kind` (OpenInference:
LLM, RETRIEVER, TOOL, CHAIN) and `async run(values, ctx)`, where `values` is the
configuration with its references read. Optional: `targets(config)` (steps it runs
itself), `check(config, plugins)` (more checks on save), `stream(values, ctx)` (text
deltas, for a step that can be the streamed output)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import orjson
from pydantic import Field, field_validator

from shipyard.errors import InvalidInput
from shipyard.gateway.core.call import ChatRequest
from shipyard.inputs import Strict
from shipyard.pipelines.engine import StepContext, StepError, cut
from shipyard.pipelines.spec import IDENT
from shipyard.plugins import TOOL_FUNCTIONS

TOOLS_GROUP = TOOL_FUNCTIONS
STEP_ID = Field(pattern=IDENT, max_length=64)


log = logging.getLogger("shipyard.pipelines")


class PromptConfig(Strict):
    prompt: str = Field(min_length=1, max_length=200, description="a registry prompt reference")
    variables: dict[str, Any] = Field(default_factory=dict, max_length=64)


class PromptStep:
    """Render a registry prompt version: its messages, default model and parameters."""

    config_model = PromptConfig
    output_type = "messages"
    expects: dict[str, str] = {}
    span_kind = "PROMPT"

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        rendered = await ctx.services.prompt(values["prompt"], values.get("variables") or {})
        ctx.attributes["shipyard.prompt"] = rendered.get("prompt", "")
        return rendered


class ModelConfig(Strict):
    route: str | None = Field(
        default=None, min_length=1, max_length=200, description="a gateway route or model"
    )
    messages: Any = Field(description="a prompt step's output, a list of messages or a text")
    params: dict[str, Any] = Field(default_factory=dict, max_length=32)

    @field_validator("params")
    @classmethod
    def _no_own(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = {"model", "messages", "stream", "prompt", "variables"} & set(value)
        if taken:
            raise ValueError(f"'{sorted(taken)[0]}' is set by the step, not in params")
        return value


class ModelStep:
    """Call a gateway route with messages; the output is the reply's text."""

    config_model = ModelConfig
    output_type = "string"
    expects = {"messages": "messages"}
    span_kind = "LLM"

    def request(self, values: dict[str, Any], ctx: StepContext) -> ChatRequest:
        given = values["messages"]
        params: dict[str, Any] = {}
        model, prompt = values.get("route"), ""
        if isinstance(given, dict) and isinstance(given.get("messages"), list):
            params = dict(given.get("params") or {})
            model = model or given.get("model")
            prompt = str(given.get("prompt") or "")
            messages = given["messages"]
        elif isinstance(given, str):
            messages = [{"role": "user", "content": given}]
        elif isinstance(given, list) and all(isinstance(m, dict) for m in given):
            messages = given
        else:
            raise InvalidInput(f"step '{ctx.step.id}': messages must be messages or a text")
        if not model:
            raise InvalidInput(
                f"step '{ctx.step.id}': no route (set one, or read messages from a prompt"
                " step whose prompt names a default model)"
            )
        params.update(values.get("params") or {})
        ctx.attributes["gen_ai.request.model"] = model
        return ChatRequest(model, messages, params, prompt=prompt)

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        result = await ctx.services.chat(self.request(values, ctx), ctx.trace)
        usage = result.usage
        ctx.attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
        ctx.attributes["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens") or 0)
        ctx.attributes["shipyard.request_id"] = result.request_id
        ctx.attributes["shipyard.cost_usd"] = float(result.cost_usd or 0)
        return result.content

    async def stream(self, values: dict[str, Any], ctx: StepContext) -> AsyncIterator[str]:
        async for chunk in ctx.services.chat_stream(self.request(values, ctx), ctx.trace):
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if isinstance(text, str) and text:
                    yield text
            usage = chunk.get("usage")
            if usage:
                ctx.attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
                ctx.attributes["gen_ai.usage.output_tokens"] = int(
                    usage.get("completion_tokens") or 0
                )


class RetrieveConfig(Strict):
    knowledge_base: str = Field(min_length=1, max_length=128)
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=5, ge=1, le=100)
    mode: Literal["hybrid", "vector", "lexical"] = "hybrid"
    where: dict[str, Any] = Field(default_factory=dict, max_length=16)
    rerank: str | None = Field(default=None, min_length=1, max_length=64)


class RetrieveStep:
    """Search a knowledge base; the output is the chunks, best first (`id` is the
    document's name, so retrieval metrics compare documents)."""

    config_model = RetrieveConfig
    output_type = "chunks"
    expects = {"query": "string"}
    span_kind = "RETRIEVER"

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        query = values["query"]
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput(f"step '{ctx.step.id}': query is empty")
        body = {k: v for k, v in values.items() if k != "knowledge_base"}
        hits = await ctx.services.search(values["knowledge_base"], body)
        chunks = [
            {
                "id": h["document"],
                "chunk_id": h["chunk_id"],
                "position": h["position"],
                "text": h["text"],
                "score": h["score"],
                "metadata": h.get("metadata") or {},
            }
            for h in hits
        ]
        ctx.attributes["input.value"] = query
        for i, c in enumerate(chunks):
            prefix = f"retrieval.documents.{i}.document"
            ctx.attributes[f"{prefix}.id"] = c["id"]
            ctx.attributes[f"{prefix}.score"] = float(c["score"])
            ctx.attributes[f"{prefix}.content"] = cut(c["text"], 1000)
            ctx.attributes[f"{prefix}.metadata"] = cut(
                {"chunk_id": c["chunk_id"], "position": c["position"], **c["metadata"]}, 1000
            )
        return chunks


class ToolConfig(Strict):
    tool: str = Field(min_length=1, max_length=128, description="a `shipyard.tools` entry point")
    args: dict[str, Any] = Field(default_factory=dict, max_length=64)


class ToolThreads:
    """Where plain-function tools run: threads of their own, not the event loop's
    default executor. A thread cannot be stopped, so a tool that outlives its step's
    timeout holds its thread until it returns; here it holds one of `size` tool
    threads, never one the server's own database calls need. A call waits for a free
    tool thread within its step's timeout; one that times out before it started never
    runs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.running = 0  # tools running now, timed out or not
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="shipyard-tool")

    async def run(self, fn: Callable[..., Any], args: dict[str, Any]) -> Any:
        if self.running >= self.size:
            log.warning("all %d tool threads are busy: a tool step waits for one", self.size)
        call = functools.partial(contextvars.copy_context().run, fn, **args)
        # cancelled (the step's timeout) before a thread took it: it never starts
        return await asyncio.wrap_future(self._pool.submit(self._call, call))

    def _call(self, call: Callable[[], Any]) -> Any:
        with self._lock:
            self.running += 1
        try:
            return call()
        finally:
            with self._lock:
                self.running -= 1


TOOL_THREADS = ToolThreads(16)


class ToolStep:
    """Call a registered Python function (entry point group `shipyard.tools`) with
    keyword arguments; a plain function runs in a tool thread (`ToolThreads`). Its
    result must be JSON."""

    config_model = ToolConfig
    output_type = "any"
    expects: dict[str, str] = {}
    span_kind = "TOOL"

    def check(self, config: dict[str, Any], plugins: Any) -> None:
        if config["tool"] not in plugins.names(TOOLS_GROUP):
            raise InvalidInput(f"tool: '{config['tool'][:128]}' is not a registered tool")

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        fn = ctx.services.tool(values["tool"])
        args = values.get("args") or {}
        ctx.attributes["tool.name"] = values["tool"]
        if inspect.iscoroutinefunction(fn):
            out = await fn(**args)
        else:
            out = await TOOL_THREADS.run(fn, args)
        try:
            return orjson.loads(orjson.dumps(out))
        except TypeError:
            raise StepError(f"the tool returned {type(out).__name__}, not JSON") from None


class BranchConfig(Strict):
    on: Any = Field(description="the value the cases match (a reference)")
    cases: dict[str, str] = Field(min_length=1, max_length=32, description="value -> step id")
    default: str | None = Field(default=None, pattern=IDENT, max_length=64)

    @field_validator("cases")
    @classmethod
    def _ids(cls, value: dict[str, str]) -> dict[str, str]:
        from shipyard.pipelines.spec import _IDENT

        for case, target in value.items():
            if not _IDENT.fullmatch(target):
                raise ValueError(f"case '{case[:64]}': '{target[:64]}' is not a step id")
        return value


class BranchStep:
    """Run the step of the case `on` matches (its text, stripped, case-insensitive;
    true/false for booleans), else `default`; the output is that step's."""

    config_model = BranchConfig
    output_type = "any"
    expects: dict[str, str] = {}
    span_kind = "CHAIN"

    def targets(self, config: dict[str, Any]) -> list[str]:
        out = list(dict.fromkeys(config["cases"].values()))
        return out + ([config["default"]] if config.get("default") else [])

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        on = values.get("on")
        key = str(on).lower() if isinstance(on, bool) else str(on).strip().casefold()
        cases = {k.strip().casefold(): v for k, v in values["cases"].items()}
        target = cases.get(key) or values.get("default")
        if target is None:
            raise InvalidInput(
                f"step '{ctx.step.id}': no case matches '{cut(on, 80)}' and there is no default"
            )
        ctx.attributes["shipyard.pipeline.branch"] = target
        return await ctx.evaluate(target)


class MapConfig(Strict):
    over: Any = Field(description="a list (a reference)")
    step: str = STEP_ID
    concurrency: int = Field(default=4, ge=1, le=16)
    max_items: int = Field(default=100, ge=1, le=1000)


class MapStep:
    """Run `step` once per item of `over` (the step reads it as `$item`), at most
    `concurrency` at once; the output is the list of their outputs, in order."""

    config_model = MapConfig
    output_type = "list"
    expects = {"over": "list"}
    span_kind = "CHAIN"

    def targets(self, config: dict[str, Any]) -> list[str]:
        return [config["step"]]

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        items = values.get("over")
        if not isinstance(items, list):
            raise InvalidInput(f"step '{ctx.step.id}': over is not a list")
        if len(items) > values["max_items"]:
            raise InvalidInput(
                f"step '{ctx.step.id}': {len(items)} items, more than max_items"
                f" ({values['max_items']})"
            )
        gate = asyncio.Semaphore(values["concurrency"])

        async def one(index: int, item: Any) -> Any:
            async with gate:
                return await ctx.evaluate_item(values["step"], item, index)

        ctx.attributes["shipyard.pipeline.items"] = len(items)
        tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise


class OutputConfig(Strict):
    value: Any = Field(description="what the pipeline returns (references allowed)")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    parse_json: bool = Field(default=False, description="parse a text value as JSON first")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"not a JSON Schema: {exc.message[:200]}") from None
        return value


class OutputStep:
    """Shape the pipeline's result, checked against a JSON Schema."""

    config_model = OutputConfig
    output_type = "any"
    expects: dict[str, str] = {}
    span_kind = "CHAIN"

    async def run(self, values: dict[str, Any], ctx: StepContext) -> Any:
        value = values.get("value")
        if values.get("parse_json") and isinstance(value, str):
            try:
                value = orjson.loads(_fenced(value))
            except orjson.JSONDecodeError:
                raise StepError("the value is not JSON") from None
        schema = values.get("schema_") or values.get("schema")
        if schema:
            error = await asyncio.to_thread(_first_error, schema, value)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise StepError(
                    f"the output does not match its schema at {where}: {error.message[:200]}"
                )
        return value


def _first_error(schema: dict[str, Any], value: Any) -> Any:
    from jsonschema import Draft202012Validator

    return next(iter(Draft202012Validator(schema).iter_errors(value)), None)


def _fenced(text: str) -> str:
    """A model's JSON, without a Markdown code fence around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped
