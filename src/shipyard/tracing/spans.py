"""What the trace store keeps: `Span` (one per OTLP span or gateway call, already
normalized and masked), `TraceSummary` (one per trace, kept up to date as its spans
arrive), the queries the store answers and the page they come back in.

Spans travel through the write-ahead log as orjson (a dataclass serializes natively);
`Span.from_dict` reads them back."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

T = TypeVar("T")

KINDS = ("internal", "server", "client", "producer", "consumer")
STATUSES = ("unset", "ok", "error")


@dataclass(slots=True)
class Span:
    workspace_id: str
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_id: str = ""  # "" for a root span
    name: str = ""
    kind: str = "internal"  # one of KINDS
    start_ns: int = 0  # Unix epoch nanoseconds
    end_ns: int = 0
    status: str = "unset"  # one of STATUSES
    status_message: str = ""
    service: str = ""  # the resource's service.name
    # what the span does: gen_ai.operation.name ("chat", "embeddings", "execute_tool",
    # "text_completion", ...) or the OpenInference span kind, lower case ("llm",
    # "retriever", "agent", "chain", "tool", ...); "" for other spans
    operation: str = ""
    model: str = ""
    provider: str = ""  # gen_ai.provider.name / gen_ai.system
    route: str = ""  # the gateway route (gateway spans)
    key_id: str = ""  # the Shipyard key that sent the span (ingest) or made the call
    user_id: str = ""
    session_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    input: str = ""  # capped and masked
    output: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)  # masked; flat, dotted keys
    events: list[dict[str, Any]] = field(default_factory=list)  # {name, time_ns, attributes}
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def llm(self) -> bool:
        """A model call: counted in the metrics roll-ups."""
        return bool(self.model)

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Span:
        """A span as orjson wrote it (unknown keys ignored). Raises ValueError."""
        try:
            return cls(**{k: item[k] for k in _SPAN_FIELDS if k in item})
        except TypeError as exc:
            raise ValueError(f"not a span: {exc}") from None


_SPAN_FIELDS = tuple(f.name for f in fields(Span))


@dataclass(slots=True)
class TraceSummary:
    workspace_id: str
    trace_id: str
    name: str = ""  # the root span's name (the earliest span's until the root arrives)
    start_ns: int = 0
    end_ns: int = 0
    span_count: int = 0
    error_count: int = 0
    service: str = ""
    model: str = ""  # the first model seen in the trace
    route: str = ""
    key_id: str = ""
    user_id: str = ""
    session_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    input: str = ""  # the root span's input, cut to a preview
    output: str = ""

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def status(self) -> str:
        return "error" if self.error_count else "ok"


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Filters of the trace list; every one given must hold (AND). Times are Unix
    nanoseconds over the trace's start; text is full text over span inputs and outputs;
    attribute is (key, value) that some span of the trace carries."""

    since_ns: int | None = None
    until_ns: int | None = None
    route: str | None = None
    model: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    service: str | None = None
    status: str | None = None  # "ok" or "error"
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    min_cost_usd: float | None = None
    max_cost_usd: float | None = None
    min_tokens: int | None = None  # input + output
    max_tokens: int | None = None
    attribute: tuple[str, str] | None = None
    text: str | None = None
    limit: int = 50
    cursor: str | None = None  # from Page.next_cursor


@dataclass(frozen=True, slots=True)
class SessionSummary:
    workspace_id: str
    session_id: str
    trace_count: int
    start_ns: int
    end_ns: int
    user_id: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error_count: int


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    """Roll-up figures per time bucket (and per each `group_by` value) over LLM spans."""

    since_ns: int
    until_ns: int
    bucket_seconds: int = 3600  # a multiple of 60
    group_by: tuple[str, ...] = ()  # of "route", "model", "key_id"
    route: str | None = None
    model: str | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class MetricPoint:
    bucket_ns: int  # the bucket's start
    group: dict[str, str]  # the group_by values of this point
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p90_ms: float | None
    ttft_p99_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    input_chars: int  # summed sizes of inputs and outputs
    output_chars: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None = None
