"""LLM-call metrics for Prometheus, from every model span the trace store receives (OTLP
ingest and gateway calls alike): calls, errors, tokens in and out, cost, and histograms
of latency and time to first token, by workspace, route and model.

Label cardinality is bounded: each label keeps the first `max_values` distinct values it
sees (50 by default) and counts every later one as "other", so a client that sends a new
model name per span cannot grow the scrape without end. An empty value is "none".

Plain numbers under one lock per batch (a batch is one export request or one gateway
call), read at scrape time: no `prometheus_client` child lookups per span.

    shipyard_llm_calls_total{workspace,route,model}
    shipyard_llm_errors_total{workspace,route,model}
    shipyard_llm_input_tokens_total{workspace,route,model}
    shipyard_llm_output_tokens_total{workspace,route,model}
    shipyard_llm_cost_usd_total{workspace,route,model}
    shipyard_llm_latency_seconds_bucket|_sum|_count{workspace,route,model,le}
    shipyard_llm_ttft_seconds_bucket|_sum|_count{workspace,route,model,le}"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from shipyard.tracing.spans import Span

LABELS = ("workspace", "route", "model")
OTHER, NONE = "other", "none"
MAX_VALUES = 50  # distinct values kept per label
MAX_LABEL_CHARS = 120
MAX_RAW = 10_000  # (workspace, route, model) as sent, remembered with their counters
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass(slots=True)
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), running))
        return out


@dataclass(slots=True)
class _Stats:
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency: _Histogram = field(default_factory=lambda: _Histogram(LATENCY_BUCKETS))
    ttft: _Histogram = field(default_factory=lambda: _Histogram(TTFT_BUCKETS))


class LLMMetrics:
    """A Prometheus collector fed with spans; only model calls (`span.llm`) count."""

    def __init__(self, registry: CollectorRegistry, *, max_values: int = MAX_VALUES) -> None:
        self.max_values = max_values
        self._values: tuple[set[str], ...] = tuple(set() for _ in LABELS)
        self._stats: dict[tuple[str, str, str], _Stats] = {}
        self._raw: dict[tuple[str, str, str], _Stats] = {}  # the values as sent
        self._lock = threading.Lock()
        registry.register(self)

    def _label(self, at: int, value: str) -> str:
        if not value:
            return NONE
        seen = self._values[at]
        if value in seen:
            return value
        if len(seen) >= self.max_values or len(value) > MAX_LABEL_CHARS:
            return OTHER
        seen.add(value)
        return value

    def _stats_for(self, raw: tuple[str, str, str]) -> _Stats:
        key = (self._label(0, raw[0]), self._label(1, raw[1]), self._label(2, raw[2]))
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = _Stats()
        if len(self._raw) >= MAX_RAW:  # hostile values: the lookaside stays bounded
            self._raw.clear()
        self._raw[raw] = stats
        return stats

    def observe(self, spans: Iterable[Span]) -> None:
        raw_stats = self._raw
        with self._lock:
            for span in spans:
                if not span.model:  # not a model call (`Span.llm`)
                    continue
                raw = (span.workspace_id, span.route, span.model)
                stats = raw_stats.get(raw) or self._stats_for(raw)
                stats.calls += 1
                if span.status == "error":
                    stats.errors += 1
                if span.input_tokens > 0:
                    stats.input_tokens += span.input_tokens
                if span.output_tokens > 0:
                    stats.output_tokens += span.output_tokens
                cost = span.cost_usd
                if 0 < cost < math.inf:
                    stats.cost_usd += cost
                stats.latency.observe(max(0, span.end_ns - span.start_ns) / 1e9)
                ttft = span.ttft_ms
                if ttft is not None and 0 <= ttft < math.inf:
                    stats.ttft.observe(ttft / 1000)

    def collect(self) -> Iterator[Metric]:
        labels = list(LABELS)
        families = {
            name: CounterMetricFamily(f"shipyard_llm_{name}", text, labels=labels)
            for name, text in (
                ("calls", "Model calls seen in spans (ingested and gateway)."),
                ("errors", "Model calls whose span ended in error."),
                ("input_tokens", "Input tokens of model calls."),
                ("output_tokens", "Output tokens of model calls."),
                ("cost_usd", "Cost of model calls in USD."),
            )
        }
        latency = HistogramMetricFamily(
            "shipyard_llm_latency_seconds", "Model call duration.", labels=labels
        )
        ttft = HistogramMetricFamily(
            "shipyard_llm_ttft_seconds", "Time to the first token of model calls.", labels=labels
        )
        with self._lock:
            rows = [
                (
                    list(key),
                    (s.calls, s.errors, s.input_tokens, s.output_tokens, s.cost_usd),
                    (s.latency.cumulative(), s.latency.total),
                    (s.ttft.cumulative(), s.ttft.total),
                )
                for key, s in sorted(self._stats.items())
            ]
        for key, sums, (lat, lat_sum), (first, first_sum) in rows:
            for family, value in zip(families.values(), sums, strict=True):
                family.add_metric(key, value)
            latency.add_metric(key, lat, sum_value=lat_sum)
            ttft.add_metric(key, first, sum_value=first_sum)
        yield from families.values()
        yield latency
        yield ttft
