"""The write path's arithmetic, in Python: a batch's new spans folded into their traces'
summaries, the sessions' totals and the roll-ups' sums and histograms (the store reads
the stored rows, merges, and upserts)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

from shipyard.tracing.spans import Span, TraceSummary
from shipyard.tracing.store import histogram
from shipyard.tracing.store.rows import INT64

PREVIEW_CHARS = 500  # a trace summary's input and output
TRACE_COLUMNS = tuple(f.name for f in fields(TraceSummary))
ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "input_chars",
    "output_chars",
)
# the fields a trace takes from the first of its spans that has them (and trace list filters)
INHERITED = ("service", "model", "route", "key_id", "user_id", "session_id")


# --- the write path's arithmetic ---------------------------------------------------------


@dataclass(slots=True)
class SessionDelta:
    trace_count: int = 0
    start_ns: int = INT64[1]
    end_ns: int = 0
    user_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error_count: int = 0


@dataclass(slots=True)
class Rollup:
    sums: list[float] = field(default_factory=lambda: [0] * len(ROLLUP_SUMS))
    latency: histogram.Counts = field(default_factory=dict)
    ttft: histogram.Counts = field(default_factory=dict)


def add_to(
    into: Rollup,
    sums: Sequence[float],
    latency: Iterable[Sequence[int]],
    ttft: Iterable[Sequence[int]],
) -> None:
    into.sums = [a + b for a, b in zip(into.sums, sums[: len(ROLLUP_SUMS)], strict=True)]
    histogram.merge(into.latency, latency)
    histogram.merge(into.ttft, ttft)


def fold(old: TraceSummary | None, has_root: bool, spans: list[Span]) -> tuple[TraceSummary, bool]:
    """The trace's summary with a batch's new spans added (spans in start order). The
    root span (no parent) names the trace and gives its input and output; until it
    arrives the earliest span does. Model, route, key, user, session and service: the
    first seen wins."""
    first = spans[0]
    if old is None:
        row = TraceSummary(first.workspace_id, first.trace_id, start_ns=first.start_ns)
    else:
        row = TraceSummary(*[getattr(old, c) for c in TRACE_COLUMNS])
    missing = [c for c in INHERITED if not getattr(row, c)]  # filled by the first seen
    for span in spans:
        if span.parent_id == "" and not has_root:
            has_root = True
            row.name, row.input, row.output = _headline(span)
        elif not has_root and (span.start_ns < row.start_ns or not row.span_count):
            row.name, row.input, row.output = _headline(span)
        row.start_ns = min(row.start_ns, span.start_ns)
        row.end_ns = max(row.end_ns, span.end_ns)
        row.span_count += 1
        row.error_count += span.status == "error"
        row.input_tokens += span.input_tokens
        row.output_tokens += span.output_tokens
        row.cost_usd += span.cost_usd
        if missing:
            for column in missing:
                value = getattr(span, column)
                if value:
                    setattr(row, column, value)
            missing = [c for c in missing if not getattr(row, c)]
    return row, has_root


def _headline(span: Span) -> tuple[str, str, str]:
    return span.name, span.input[:PREVIEW_CHARS], span.output[:PREVIEW_CHARS]


def session_delta(into: SessionDelta, old: TraceSummary | None, new: TraceSummary) -> None:
    joined = old is None or not old.session_id  # the trace is new to its session
    into.trace_count += joined
    into.start_ns = min(into.start_ns, new.start_ns)
    into.end_ns = max(into.end_ns, new.end_ns)
    into.user_id = into.user_id or new.user_id
    base = None if joined else old
    into.input_tokens += new.input_tokens - (base.input_tokens if base else 0)
    into.output_tokens += new.output_tokens - (base.output_tokens if base else 0)
    into.cost_usd += new.cost_usd - (base.cost_usd if base else 0.0)
    into.error_count += new.error_count - (base.error_count if base else 0)
