"""Every extension contract of Shipyard, on one page.

A plugin implements one of these Protocols and registers it under an entry-point group
of its distribution's `pyproject.toml`; Shipyard's own built-ins register the same way
(see this project's `pyproject.toml`). `docs/extending.md` shows each with a short
example, and a test fails when a Protocol here is missing from it.

| Protocol        | entry-point group        | what it is                                   |
| --------------- | ------------------------ | -------------------------------------------- |
| `Provider`      | `shipyard.providers`     | one upstream connection (a model vendor, a   |
|                 |                          | local runtime), created per provider config  |
| `Capability`    | `shipyard.capabilities`  | a product capability: routers, pages,        |
|                 |                          | permissions, migrations, services, CLI       |
| `Counters`      | (setting `redis_url`)    | rate windows, token windows, budgets         |
| `ResponseCache` | (setting `redis_url`)    | the gateway's exact-match response cache     |
| `RecordStore`   | (the metadata database)  | where request records (the ledger) are kept  |
| `TraceStore`    | (setting `trace_database_url`) | where spans, traces and roll-ups are kept |
| `CallSink`      | (a capability's service) | receives every finished gateway call         |
| `Gate`          | `shipyard.gates`         | a check a promotion must pass (registry)     |
| `Scorer`        | `shipyard.scorers`       | scores evaluation cases (exact match, BLEU,  |
|                 |                          | an LLM judge...)                             |
| `MetricSource`  | (a capability's service) | metrics of its own that alert rules can take |
|                 |                          | (feedback scores, online evaluation)         |
| `PromptSource`  | (a capability's service) | prompt references (`prompt: name@alias`) the  |
|                 |                          | gateway renders into messages                |
| `RouteResolver` | (a capability's service) | turns a route's target (a registry alias, a  |
|                 |                          | catalog query) into deployments              |
| `VectorIndex`   | (the metadata database's | nearest-neighbour search over a knowledge    |
|                 | engine)                  | base's chunk vectors, with metadata filters  |
| `Reranker`      | `shipyard.rerankers`     | re-scores a search's candidates (`rerank` in |
|                 |                          | a search request)                            |
| `Service`       | (a capability's service) | a long-lived object with start and stop      |

Import cost matters: this module imports nothing heavy, and plugins are imported only
when a configuration names them.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shipyard.capability import Capability
    from shipyard.gateway.config.specs import Deployment, ProviderSpec
    from shipyard.gateway.core.call import Call
    from shipyard.gateway.records.record import Record
    from shipyard.tracing.spans import (
        MetricPoint,
        MetricsQuery,
        Page,
        SessionSummary,
        Span,
        TraceQuery,
        TraceSummary,
    )

Body = dict[str, Any]

PROVIDERS = "shipyard.providers"
GATES = "shipyard.gates"
SCORERS = "shipyard.scorers"
RERANKERS = "shipyard.rerankers"
PIPELINE_STEPS = "shipyard.pipeline_steps"
TOOL_FUNCTIONS = "shipyard.tools"  # plain functions a pipeline's tool steps call
CAPABILITIES = "shipyard.capabilities"

# What a provider may declare in `capabilities`.
CHAT, COMPLETIONS, EMBEDDINGS, STREAMING, TOOLS = (
    "chat",
    "completions",
    "embeddings",
    "streaming",
    "tools",
)


@runtime_checkable
class Provider(Protocol):
    """One upstream connection. It speaks Shipyard's canonical format, OpenAI's: request
    bodies and responses are plain dicts shaped like OpenAI's API. Failures are raised
    as `shipyard.errors.UpstreamError` with an `ErrorClass`. Operations a provider does
    not offer (not in `capabilities`) raise `InvalidInput`; `ProviderBase` does that."""

    spec: ProviderSpec
    capabilities: frozenset[str]  # of CHAT, COMPLETIONS, EMBEDDINGS, STREAMING, TOOLS

    async def chat(self, body: Body, dep: Deployment) -> Body:
        """A `chat.completion` for a chat request (stream is false)."""
        ...

    def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        """`chat.completion.chunk` dicts; the last one carries `usage` when known."""
        ...

    async def completion(self, body: Body, dep: Deployment) -> Body:
        """A `text_completion` for a legacy completions request."""
        ...

    def completion_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]: ...

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        """An embeddings `list` response."""
        ...

    async def healthy(self, dep: Deployment) -> bool:
        """Active health check of a cooling deployment: True brings it back early."""
        ...

    async def close(self) -> None: ...


ProviderFactory = Callable[["ProviderSpec"], Provider]


@dataclass(frozen=True, slots=True)
class Window:
    """A rate window to reserve in at admission: `amount` is what the request adds (1 for
    requests per minute, its worst-case tokens for tokens per minute); it is refused when
    the window's total plus `amount` would pass `limit`. Windows are calendar-aligned
    (`int(time // seconds)`)."""

    key: str
    limit: float
    seconds: float
    amount: float = 1.0


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str
    amount: float
    budget: float
    ttl: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which window (or budget) refused, and for windows how long until it resets."""

    window: int | None = None
    budget: int | None = None
    retry_after: float = 0.0


class Counters(Protocol):
    """Counters behind rate limits, token limits and budgets: one call to admit a
    request and one to settle it, each atomic (all or nothing), so concurrent requests
    cannot overspend and a shared backend costs one round trip each."""

    local: bool  # True: in this process, and no operation ever suspends

    async def admit(
        self, windows: Sequence[Window], reservations: Sequence[Reservation]
    ) -> Refusal | None:
        """Check every window and budget; if all pass, count the counting windows and
        reserve every amount, else change nothing and say what refused."""
        ...

    async def settle(
        self,
        adjustments: Sequence[tuple[str, float, float, float]],  # key, reserved, used, ttl
        windows: Sequence[tuple[str, float, float]],  # window key, delta, seconds
        admitted_at: float,
    ) -> None:
        """Reconcile reservations to what was used: each budget's reservation becomes
        what the call used (never below 0), and
        window deltas in the window the request was admitted in (`admitted_at`, a
        `time.time()`); if that window has ended, only a positive delta counts, in the
        current one."""
        ...

    async def seed(self, budgets: Sequence[tuple[str, float, float]]) -> None:
        """Raise budget counters to at least the ledger's amounts (key, amount, ttl):
        at start, after a flush of a shared backend, when a budget is added. Never
        lowers one (reservations in flight sit on top of the ledger)."""
        ...

    async def spent(self, key: str) -> float: ...

    async def close(self) -> None: ...


class ResponseCache(Protocol):
    """Exact-match response cache: bytes by key, with a time to live."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def close(self) -> None: ...


class RecordStore(Protocol):
    """Where request records are kept: written in batches by one writer thread, read by
    the API. One implementation per engine; `tests/store/test_record_store_contract.py`
    runs the same suite on each."""

    def write_batch(self, records: Sequence[Record]) -> None:
        """Store every record or none (one transaction). Called from one thread."""
        ...

    def search(
        self,
        *,
        workspace_id: str,
        route: str | None = None,
        key_id: str | None = None,
        status: int | None = None,
        errors_only: bool = False,
        since: datetime | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Newest first."""
        ...

    def usage(self, *, workspace_id: str, since: datetime) -> list[dict[str, Any]]:
        """Per route: requests, prompt and completion tokens, cost, mean latency."""
        ...

    def spend(self, *, since: datetime | None) -> list[tuple[str, str, str, float]]:
        """The spend ledger: USD per (workspace, key, end user) since `since` (None: all
        time). Budget counters are rebuilt from it."""
        ...

    def close(self) -> None: ...


class TraceStore(Protocol):
    """Where spans are kept, with a summary per trace and per-minute roll-ups of model
    calls (kept for the metrics after retention deletes raw spans). Written in batches
    by one writer per store, read by the API. One implementation per engine
    (`shipyard.tracing.store`); `tests/tracing/test_store_contract.py` runs the same
    suite on each."""

    def write(self, spans: Sequence[Span]) -> int:
        """Store the batch in one transaction and return how many spans were new: a
        span already stored (same workspace, trace and span id: a replay, a client's
        retry) is skipped and counted in no summary or roll-up."""
        ...

    def traces(self, workspace_id: str, query: TraceQuery) -> Page[TraceSummary]:
        """Traces matching every filter, newest start first, a page at a time."""
        ...

    def trace(self, workspace_id: str, trace_id: str) -> TraceSummary | None:
        """One trace's summary (None: no such trace in the workspace)."""
        ...

    def trace_spans(
        self, workspace_id: str, trace_id: str, *, cursor: str | None = None, limit: int = 1000
    ) -> Page[Span]:
        """A trace's spans in start order, a page at a time (a huge trace is never
        loaded whole)."""
        ...

    def span(self, workspace_id: str, trace_id: str, span_id: str) -> Span | None: ...

    def sessions(
        self,
        workspace_id: str,
        *,
        user_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[SessionSummary]:
        """Sessions, most recently active first."""
        ...

    def metrics(self, workspace_id: str | None, query: MetricsQuery) -> list[MetricPoint]:
        """Roll-up figures (None: every workspace), oldest bucket first."""
        ...

    def purge(self, workspace_id: str, before_ns: int) -> int:
        """Delete the raw spans (and traces) of a workspace that started before
        `before_ns`; roll-ups stay. Returns the spans deleted."""
        ...

    def close(self) -> None: ...


class CallSink(Protocol):
    """Receives every finished gateway call (HTTP or in-process), once, on the event
    loop: it must not block. The request-record writer is one; tracing adds another by
    appending to `Platform.call_sinks` from its capability."""

    def emit(self, record: Record, call: Call | None = None) -> None:
        """`call` (when the gateway has it) carries the request body (`call.body`) and
        what was answered (`call.output`: the reply body, or the streamed text)."""
        ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """One weighted target a `RouteResolver` found: a provider (by name, in the route's
    workspace) and a model id, or the deployments of another route (`route`, for
    example a built-in local model). `label` says what was resolved (shown as the
    deployment and recorded with every call it answers)."""

    weight: float
    label: str
    provider: str | None = None
    model: str | None = None
    route: str | None = None
    params: dict[str, Any] | None = None
    problem: str = ""  # set: this target cannot be called now, and why (no deployment)


class RouteResolver(Protocol):
    """Turns a gateway route's `target` of one kind (`{"kind": "registry", ...}`) into
    deployments. Called when a route is saved (`check`) and when the configuration
    snapshot is built (`resolve`, in the loader's transaction): never per request. A
    capability registers one by setting `Platform.route_resolvers[kind]`; it calls
    `shipyard.gateway.config.snapshot.bump_version` when what it resolves changes."""

    kind: str

    def check(self, s: Any, *, workspace_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The normalized spec to store; raises `InvalidInput` naming the field."""
        ...

    def resolve(self, s: Any, *, workspace_id: str, spec: dict[str, Any]) -> list[Resolved]:
        """The targets now (empty: nothing qualifies; the route then answers 503)."""
        ...


class PromptSpec(Protocol):
    """One prompt version as the gateway holds it (in its configuration snapshot)."""

    @property
    def label(self) -> str:
        """What answered, recorded with the call: "support-answer@v3"."""
        ...

    def expand(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat body with `prompt` and `variables` replaced by the rendered `messages`
        (the version's default model and parameters under what the caller set).
        Raises `InvalidInput` / `PayloadTooLarge` naming the variable."""
        ...


class PromptSource(Protocol):
    """Where the gateway's prompt references come from (the registry's prompts). Read
    when the configuration snapshot is built, in its transaction: never per request."""

    def load(self, s: Any) -> dict[tuple[str, str], PromptSpec]:
        """(workspace id, reference) -> the version it names now, for every reference
        a caller may send (`name`, `name@3`, `name@production`...)."""
        ...


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: str
    passed: bool
    detail: str = ""


class Gate(Protocol):
    """A check a registry promotion must pass before its alias moves (required
    metadata is built in; evaluation thresholds plug in here). `config` is what the
    environment's policy sets for this gate (`{"gates": {"<name>": config}}`)."""

    name: str

    def check(self, s: Any, *, version: Any, environment: str, config: Any) -> GateResult: ...


@dataclass(frozen=True, slots=True)
class Case:
    """One thing to score: a dataset item's inputs and expected value, and what the
    target answered (`output`: its text, or a structured value such as a list of
    retrieved ids), with what the answer cost."""

    inputs: dict[str, Any]
    expected: Any
    output: Any
    metadata: dict[str, Any]
    latency_ms: float | None = None
    cost_usd: float | None = None
    # the ids a target retrieved, best first, when its trace says (a pipeline's
    # retrieval spans); retrieval scorers prefer them to `output`
    retrieved: list[str] | None = None

    @property
    def text(self) -> str:
        """The output as text (JSON for a structured output)."""
        if isinstance(self.output, str):
            return self.output
        if self.output is None:
            return ""
        import orjson

        return orjson.dumps(self.output).decode()


@dataclass(frozen=True, slots=True)
class Score:
    """A scorer's verdict on one case. `value` is in the scorer's own range (most are
    0..1; a judge's rubric may say 1..5); None when the case cannot be scored (say, no
    expected value), with `reason` saying why."""

    value: float | None
    reason: str = ""


@dataclass(frozen=True)
class ScoreContext:
    """What a scorer may use besides its cases: its configuration (already checked
    against `config_model`, when the scorer has one), and governed gateway calls made
    as the run's actor (`embed`: texts -> vectors through an embeddings route; `chat`:
    a typed chat call, for judges)."""

    config: dict[str, Any]
    embed: Callable[[list[str], str], Awaitable[list[list[float]]]]  # (texts, route)
    chat: Callable[[Any], Awaitable[Any]]  # ChatRequest -> ChatResult


class Scorer(Protocol):
    """Scores a batch of cases, one Score per case, in order. Built-ins: exact match,
    contains, regex, JSON validity and schema, BLEU, chrF, ROUGE, embedding similarity,
    retrieval metrics, latency, cost, an LLM judge. `config_model` (a pydantic model,
    or None) is how a run's configuration for the scorer is checked before it starts;
    `higher_is_better` orders comparisons and gates."""

    name: str
    config_model: Any  # type[pydantic.BaseModel] | None
    higher_is_better: bool

    async def score(self, cases: Sequence[Case], ctx: ScoreContext) -> list[Score]: ...


class MetricSource(Protocol):
    """Metrics a capability computes over its own data (feedback scores, online
    evaluation scores), offered to alert rules next to the trace store's. `value` is
    the metric over [since, until) for the filters, None when there is no data."""

    metrics: tuple[str, ...]

    def value(
        self,
        metric: str,
        *,
        workspace_id: str,
        since: datetime,
        until: datetime,
        route: str | None = None,
        model: str | None = None,
    ) -> float | None: ...


class VectorIndex(Protocol):
    """Nearest neighbours (cosine) among a knowledge base's chunk vectors. A `space` is
    one knowledge base; ids are chunk ids; `tags` are a chunk's metadata, which `where`
    filters match (`{"key": value}` equal, `{"key": [a, b]}` any of; all keys must
    match). The database's chunk rows are the truth: an index is told of each change
    after it is committed, and rebuilds a space from them when it must."""

    engine: str

    def add(
        self, space: str, ids: Sequence[int], vectors: Any, tags: Sequence[Mapping[str, Any]]
    ) -> None:
        """Vectors (a float32 matrix, one normalized row an id); an id already there is
        replaced."""
        ...

    def remove(self, space: str, ids: Sequence[int]) -> None: ...

    def search(
        self, space: str, dims: int, query: Any, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[int, float]]:
        """Up to `k` (id, cosine similarity), most similar first."""
        ...

    def count(self, space: str) -> int: ...

    def drop(self, space: str) -> None: ...

    def save(self) -> None:
        """Persist what is in memory (the server's stop)."""
        ...


@dataclass(frozen=True)
class Candidate:
    """One chunk a search found, for a reranker: its text, its stored vector (a float32
    unit row) and its metadata."""

    chunk_id: int
    text: str
    vector: Any  # numpy float32, unit length
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class RerankContext:
    """`query_vector`: the query's embedding (unit length) through the knowledge base's
    embeddings route; `embed`: more texts through that route, as the caller (governed
    and recorded like any call)."""

    query_vector: Any
    embed: Callable[[list[str]], Awaitable[list[list[float]]]]


class Reranker(Protocol):
    """Re-scores a search's candidates (up to `max(4k, 20)` of them, fused first): one
    score per candidate, in order, higher is better; the best `k` are returned with it
    as their `score`. Built-in: `cosine` (the stored vectors against the query's: a
    semantic order for lexical and hybrid results). Constructed with no arguments."""

    name: str

    async def rerank(
        self, query: str, candidates: Sequence[Candidate], ctx: RerankContext
    ) -> list[float]: ...


class PipelineStep(Protocol):
    """A step type of pipelines (`type: <name>` in a spec). `config_model` (pydantic)
    checks the step's own fields on save; `expects` maps a field to the type a
    reference there must give (string, messages, list, object, any) and `output_type`
    is what the step gives (string, messages, chunks, list, object, scalar, any), so a
    mismatch is refused naming the step; `span_kind` is its OpenInference span kind.
    `run` gets the configuration with references read and a `StepContext` (the caller's
    governed `services`: chat, chat_stream, search, prompt, tool; `attributes` for its
    span; `trace` for a gateway call under the step's span; `evaluate(step_id)` to run
    another step). Optional: `targets(config)` (steps it runs itself, for the cycle
    check), `check(config, plugins)` (more checks on save), `stream(values, ctx)` (text
    deltas, when it is a streamed pipeline's output). Constructed with no arguments."""

    config_model: type[Any]
    output_type: str
    expects: Mapping[str, str]
    span_kind: str

    async def run(self, values: dict[str, Any], ctx: Any) -> Any: ...


class Service(Protocol):
    """A capability's long-lived object. Started in capability order after migrations,
    stopped in reverse order."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Plugins:
    """Entry points, read once per instance (not per process: tests build many)."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, str]] = {}

    def names(self, group: str) -> dict[str, str]:
        found = self._groups.get(group)
        if found is None:
            found = {ep.name: ep.value for ep in entry_points(group=group)}
            if not found and group in (PROVIDERS, CAPABILITIES):
                raise RuntimeError(
                    f"no '{group}' entry points: install Shipyard (pip install -e .)"
                )
            self._groups[group] = found
        return found

    def load(self, group: str, name: str) -> Any:
        target = self.names(group).get(name)
        if target is None:
            raise KeyError(name)
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def provider_factory(self, kind: str) -> ProviderFactory:
        factory: ProviderFactory = self.load(PROVIDERS, kind)
        return factory

    def capabilities(self) -> list[Capability]:
        """Every registered capability, ordered by `order` then name."""
        found = [self.load(CAPABILITIES, name) for name in self.names(CAPABILITIES)]
        return sorted(found, key=lambda c: (c.order, c.name))
