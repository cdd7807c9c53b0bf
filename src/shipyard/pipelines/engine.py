"""Running a compiled pipeline.

Evaluation pulls: the output step is asked for; a step first resolves the references in
its configuration, running the steps they name (concurrently, once each: a step read
twice runs once per scope), then runs itself with its retries and timeout. A branch runs
only the case it takes; a map runs its step once per item, in the item's scope, with
bounded concurrency. Unread steps never run.

Every step execution is kept as a `StepRecord` (input, output, timing, status, span id):
the service writes them as spans of one trace, the playground shows them, and the
benchmark reads each step's own time to measure what the engine adds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from random import getrandbits
from typing import Any, Protocol

import orjson

from shipyard.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    ShipyardError,
    Unauthenticated,
)
from shipyard.pipelines.spec import Pipeline, Ref, Step, is_type, literal, parse_ref

MAX_RECORD_CHARS = 4000  # a step's input and output as kept for spans and the playground
MAX_STEP_RUNS = 5000  # step executions in one invocation (maps under branches fan out)
# a caller's mistake, a missing thing or the caller's own limit (429: the caller retries
# after Retry-After, not a step holding the invocation open) fails at once; anything
# else is retried as the step says
NOT_RETRIED = (InvalidInput, NotFound, PermissionDenied, Unauthenticated, RateLimited)


class StepFailed(ShipyardError):
    """A step failed after its retries; the run fails with the step named."""

    status = 502
    title = "Pipeline step failed"
    code = "pipeline_step_failed"

    def __init__(self, step: str, detail: str, *, status: int = 502, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.step = step
        self.status = status


class StepError(ShipyardError):
    """A step's own failure, with a message worth showing (an output that misses its
    schema, a tool that returned something that is not JSON); retried as configured."""

    status = 502
    title = "Pipeline step failed"
    code = "pipeline_step_failed"


class Services(Protocol):
    """What steps call, bound to the invoking actor (the service's `Bound`)."""

    async def chat(self, request: Any, trace: tuple[str, str]) -> Any: ...

    def chat_stream(self, request: Any, trace: tuple[str, str]) -> AsyncIterator[Any]: ...

    async def search(self, knowledge_base: str, query: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def prompt(self, ref: str, variables: dict[str, Any]) -> dict[str, Any]: ...

    def tool(self, name: str) -> Callable[..., Any]: ...


def new_span_id() -> str:
    return f"{getrandbits(64) | 1:016x}"


def cut(value: Any, limit: int = MAX_RECORD_CHARS) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class StepRecord:
    step: str
    type: str
    span_id: str
    parent_id: str
    start_ns: int = 0
    end_ns: int = 0
    own_ns: int = 0  # inside the step type's own code (children excluded for a map/branch)
    status: str = "ok"
    error: str = ""
    attempts: int = 1
    input: str = ""
    output: str = ""
    item: int | None = None  # the item's index, in a map
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class Scope:
    memo: dict[str, asyncio.Future[Any]]
    parent: str  # the span steps run in this scope hang under
    item: Any = None
    index: int | None = None


@dataclass
class StepContext:
    """What a step type's `run` gets besides its resolved configuration."""

    run: Run
    step: Step
    record: StepRecord
    scope: Scope

    @property
    def services(self) -> Services:
        return self.run.services

    @property
    def trace(self) -> tuple[str, str]:
        """(trace id, this step's span id): a gateway call made here is its child."""
        return self.run.trace_id, self.record.span_id

    @property
    def attributes(self) -> dict[str, Any]:
        return self.record.attributes

    async def evaluate(self, step_id: str) -> Any:
        """Run (or reuse) another step, under this one (a branch's case)."""
        scope = Scope(self.scope.memo, self.record.span_id, self.scope.item, self.scope.index)
        return await self._timed(self.run.evaluate(step_id, scope))

    async def evaluate_item(self, step_id: str, item: Any, index: int) -> Any:
        """Run a step for one item, in the item's own scope (a map's step)."""
        scope = Scope({}, self.record.span_id, item, index)
        return await self._timed(self.run.evaluate(step_id, scope))

    async def _timed(self, work: Awaitable[Any]) -> Any:
        # a child's time is the child's, not this step's own
        started = time.perf_counter_ns()
        try:
            return await work
        finally:
            self.record.own_ns -= time.perf_counter_ns() - started


class Run:
    """One invocation: inputs checked, steps evaluated on demand, records kept."""

    def __init__(
        self,
        pipeline: Pipeline,
        inputs: dict[str, Any],
        services: Services,
        *,
        trace_id: str,
        root_span: str,
    ) -> None:
        self.pipeline = pipeline
        self.inputs = checked_inputs(pipeline, inputs)
        self.services = services
        self.trace_id = trace_id
        self.root_span = root_span
        self.records: list[StepRecord] = []
        self.root = Scope({}, root_span)
        self.output: Any = None

    async def result(self) -> Any:
        self.output = await self.evaluate(self.pipeline.output, self.root)
        return self.output

    async def stream(self) -> AsyncIterator[str]:
        """The output step's text as it is produced: streamed when the step type can
        (a model step), else the whole output once."""
        step = self.pipeline.output_step
        if not hasattr(step.impl, "stream"):
            self.output = await self.evaluate(step.id, self.root)
            yield self.output if isinstance(self.output, str) else cut(self.output, 10**9)
            return
        values = await self.resolve(step, self.root)
        record = self._record(step, self.root, values)
        ctx = StepContext(self, step, record, self.root)
        parts: list[str] = []
        started = time.perf_counter_ns()
        with _ending(step, record):
            try:
                async for delta in step.impl.stream(values, ctx):
                    parts.append(delta)
                    yield delta
            finally:
                record.own_ns += time.perf_counter_ns() - started
        self.output = "".join(parts)
        record.output = cut(self.output)

    async def evaluate(self, step_id: str, scope: Scope) -> Any:
        step = self.pipeline.steps[step_id]
        memo = scope.memo if step.item_scoped else self.root.memo
        found = memo.get(step_id)
        if found is not None:
            try:
                return await asyncio.shield(found)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if found.cancelled() and task is not None and not task.cancelling():
                    # its first reader was cancelled (a timeout, a failed sibling), not
                    # this one: run it again
                    return await self.evaluate(step_id, scope)
                raise
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        memo[step_id] = future
        try:
            value = await self._execute(step, scope)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: a later reader re-raises it
            else:
                memo.pop(step_id, None)  # cancelled: a later reader runs it afresh
                future.cancel()
            raise
        future.set_result(value)
        return value

    async def resolve(self, step: Step, scope: Scope) -> dict[str, Any]:
        """The step's configuration with its references read (the steps they name run
        first, concurrently)."""
        names = list(dict.fromkeys(r.name for r in step.refs if r.root == "steps"))
        if len(names) == 1:
            got = {names[0]: await self.evaluate(names[0], scope)}
        elif names:
            tasks = [asyncio.create_task(self.evaluate(n, scope)) for n in names]
            try:
                values = await asyncio.gather(*tasks)
            except BaseException:  # one failed (or this was cancelled): the rest stop
                for task in tasks:
                    task.cancel()
                raise
            got = dict(zip(names, values, strict=True))
        else:
            got = {}
        out: dict[str, Any] = self._substitute(step, step.config, got, scope)
        return out

    def _substitute(self, step: Step, value: Any, got: dict[str, Any], scope: Scope) -> Any:
        if isinstance(value, str):
            ref = parse_ref(value)
            return literal(value) if ref is None else self._read(step, ref, got, scope)
        if isinstance(value, dict):
            return {k: self._substitute(step, v, got, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(step, v, got, scope) for v in value]
        return value

    def _read(self, step: Step, ref: Ref, got: dict[str, Any], scope: Scope) -> Any:
        if ref.root == "inputs":
            value = self.inputs.get(ref.name)
        elif ref.root == "steps":
            value = got[ref.name]
        else:
            value = scope.item
        for part in ref.path:
            value = _field(step, ref, value, part)
        return value

    async def _execute(self, step: Step, scope: Scope) -> Any:
        values = await self.resolve(step, scope)
        record = self._record(step, scope, values)
        ctx = StepContext(self, step, record, scope)
        with _ending(step, record):
            for attempt in range(step.retry.attempts + 1):
                record.attempts = attempt + 1
                started = time.perf_counter_ns()
                try:
                    async with asyncio.timeout(step.timeout_s):
                        value = await step.impl.run(values, ctx)
                    break
                except StepFailed:
                    raise  # a step this one ran failed: named already
                except TimeoutError:
                    if attempt >= step.retry.attempts:
                        raise StepFailed(
                            step.id,
                            f"step '{step.id}' ({step.type}) timed out after {step.timeout_s:g} s",
                            status=504,
                        ) from None
                except NOT_RETRIED:
                    raise
                except Exception:
                    if attempt >= step.retry.attempts:
                        raise
                    await asyncio.sleep(step.retry.backoff_s * 2**attempt)
                finally:
                    record.own_ns += time.perf_counter_ns() - started
        record.output = cut(value)
        return value

    def _record(self, step: Step, scope: Scope, values: dict[str, Any]) -> StepRecord:
        if len(self.records) >= MAX_STEP_RUNS:
            raise InvalidInput(
                f"step '{step.id}': the invocation ran {MAX_STEP_RUNS} steps; fewer items"
            )
        record = StepRecord(
            step=step.id,
            type=step.type,
            span_id=new_span_id(),
            parent_id=scope.parent,
            start_ns=time.time_ns(),
            input=cut(values),
            item=scope.index,
        )
        self.records.append(record)
        return record


@contextlib.contextmanager
def _ending(step: Step, record: StepRecord) -> Iterator[None]:
    """The step's record ended, and marked failed when it fails; the run's failure
    names the step."""
    try:
        yield
    except BaseException as exc:
        record.status = "error"
        if isinstance(exc, StepFailed):
            record.error = f"step '{exc.step}' failed"
        elif isinstance(exc, ShipyardError):
            record.error = exc.detail[:2000]
        elif isinstance(exc, Exception):
            record.error = f"{type(exc).__name__}: {exc}"[:2000]
        else:
            record.error = "cancelled"
        if isinstance(exc, Exception):
            raise _named(step, exc, record.attempts) from None
        raise
    finally:
        record.end_ns = time.time_ns()


def _named(step: Step, exc: Exception, attempts: int) -> Exception:
    """The run's failure, naming the step (once: an inner step's failure passes up)."""
    if isinstance(exc, StepFailed):
        return exc
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(exc, ShipyardError):
        status = exc.status if 400 <= exc.status < 500 else 502
        return StepFailed(
            step.id,
            f"step '{step.id}' ({step.type}) failed{tries}: {exc.detail}",
            status=status,
            retry_after=exc.retry_after,
        )
    name = type(exc).__name__
    return StepFailed(step.id, f"step '{step.id}' ({step.type}) failed{tries}: {name}")


def _field(step: Step, ref: Ref, value: Any, part: str) -> Any:
    if isinstance(value, list) and value and _is_chunk(value[0]) and part in ("text", "ids"):
        if part == "text":
            return "\n\n".join(str(c.get("text", "")) for c in value)
        return [c.get("id") for c in value]
    if isinstance(value, dict):
        if part in value:
            return value[part]
    elif isinstance(value, list) and part.isdigit():
        index = int(part)
        if index < len(value):
            return value[index]
    elif isinstance(value, list) and part in ("text", "ids"):
        return "" if part == "text" else []  # no chunks retrieved
    raise InvalidInput(f"step '{step.id}': {ref} has no '{part}' in what it read")


def _is_chunk(value: Any) -> bool:
    return isinstance(value, dict) and "text" in value and "id" in value


def checked_inputs(pipeline: Pipeline, given: dict[str, Any]) -> dict[str, Any]:
    """The inputs as declared: unknown ones refused, defaults filled, types checked."""
    if not isinstance(given, dict):
        raise InvalidInput("inputs: must be an object", param="inputs")
    unknown = sorted(set(given) - set(pipeline.inputs))
    if unknown:
        raise InvalidInput(
            f"inputs.{unknown[0][:64]}: {pipeline.label} declares no such input", param="inputs"
        )
    out: dict[str, Any] = {}
    for name, spec in pipeline.inputs.items():
        if name not in given or given[name] is None:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                raise InvalidInput(f"inputs.{name}: is required", param="inputs")
            else:
                out[name] = None
            continue
        value = given[name]
        if not is_type(value, spec.type):
            raise InvalidInput(f"inputs.{name}: must be {spec.type}", param="inputs")
        long = isinstance(value, str | list) and len(value) > (spec.max_length or len(value))
        if long:
            raise InvalidInput(f"inputs.{name}: longer than {spec.max_length}", param="inputs")
        out[name] = value
    return out
