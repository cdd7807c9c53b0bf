"""Gateway configuration as the hot path sees it: plain frozen dataclasses built once per
configuration change (never per request)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    first_token: float = 60.0  # a stream's wait for its first (and each next) chunk
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    id: str
    name: str
    kind: str  # openai | anthropic | gemini | llama_cpp | sentence_transformers | litellm
    workspace_id: str | None
    base_url: str = ""
    # decrypted, memory only; out of repr (and so out of logs and tracebacks)
    api_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        values = [self.api_key or "", *(v for _, v in self.headers)]
        return [v for v in values if v]


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    route: str
    provider: ProviderSpec
    model: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    source: str = ""  # what a route target resolved to ("support@production = v3")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    id: str
    name: str
    workspace_id: str | None
    kind: str  # chat | embedding
    deployments: tuple[Deployment, ...]
    strategy: str = "weighted"  # weighted | least_busy | lowest_latency
    retries: int = 2
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # error class -> routes
    cache_ttl: float = 0.0  # seconds; 0 disables the exact-match cache
    semantic_threshold: float | None = None  # cosine similarity for the semantic cache
    semantic_embedding_route: str = "all-minilm-l6-v2"
    description: str = ""
    target: dict[str, Any] | None = None  # deployments resolved from a registry alias...
    problem: str = ""  # why a target resolved to nothing (calls answer 503 with it)


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M tokens
    output: float
    cached_input: float | None = None

    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        return (
            (prompt - cached) * self.input + cached * cached_rate + completion * self.output
        ) / 1e6


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one scope (a key, an end user or a workspace). None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_tokens: int | None = None
    budget_usd: float | None = None
    budget_period: str = "month"  # day | month | total
    allowed_routes: tuple[str, ...] | None = None
