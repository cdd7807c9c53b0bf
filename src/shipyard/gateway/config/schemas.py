"""Admin API shapes for providers, routes, prices, limits and request records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shipyard.gateway.records.record import Record
from shipyard.inputs import Strict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class ProviderCreate(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    kind: str = Field(min_length=1, max_length=32)
    base_url: str = Field(default="", max_length=500)
    api_key: str | None = Field(default=None, max_length=2000, description="Write-only.")
    headers: dict[str, str] = Field(default_factory=dict, description="Write-only values.")
    options: dict[str, Any] = Field(default_factory=dict)
    allow_internal: bool = False


class ProviderUpdate(Strict):
    base_url: str | None = Field(default=None, max_length=500)
    api_key: str | None = Field(default=None, max_length=2000)
    headers: dict[str, str] | None = None
    options: dict[str, Any] | None = None
    allow_internal: bool | None = None


class ProviderPublic(BaseModel):
    id: str
    name: str
    kind: str
    base_url: str
    has_api_key: bool
    header_names: list[str]
    options: dict[str, Any]
    allow_internal: bool
    created_at: datetime
    updated_at: datetime


class TimeoutsIn(Strict):
    connect: float = Field(default=5.0, gt=0, le=120)
    first_token: float = Field(default=60.0, gt=0, le=3600)
    total: float = Field(default=600.0, gt=0, le=7200)


class DeploymentIn(Strict):
    provider: str = Field(min_length=1, max_length=64, description="Provider name.")
    model: str = Field(min_length=1, max_length=200)
    weight: float = Field(default=1.0, ge=0, le=1000)
    params: dict[str, Any] = Field(default_factory=dict)
    timeouts: TimeoutsIn = Field(default_factory=TimeoutsIn)


ErrorClassName = Literal[
    "rate_limit",
    "server_error",
    "timeout",
    "connect",
    "context_length",
    "content_policy",
    "malformed",
    "auth",
    "any",
]


class RouteIn(Strict):
    name: str = Field(pattern=NAME)
    kind: Literal["chat", "embedding"] = "chat"
    strategy: Literal["weighted", "least_busy", "lowest_latency"] = "weighted"
    retries: int = Field(default=2, ge=0, le=10)
    fallbacks: dict[ErrorClassName, list[str]] = Field(default_factory=dict)
    cache_ttl: float = Field(default=0.0, ge=0, le=30 * 86400)
    semantic_threshold: float | None = Field(
        default=None,
        ge=0.5,
        le=1.0,
        description="Reuse a cached reply when the prompt embeds this close (needs cache_ttl).",
    )
    semantic_embedding_route: str = Field(default="all-minilm-l6-v2", pattern=NAME)
    description: str = Field(default="", max_length=500)
    deployments: list[DeploymentIn] = Field(default_factory=list, max_length=50)
    target: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Instead of deployments: where they come from, resolved into the configuration"
            ' snapshot. {"kind": "registry", "refs": [{"ref": "support@production",'
            ' "weight": 90}, {"ref": "support@canary", "weight": 10}]} or {"kind":'
            ' "catalog", "query": {"capabilities": ["tools"], "min_context": 32000},'
            ' "order": "cost"}.'
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> RouteIn:
        if self.target is None and not self.deployments:
            raise ValueError("deployments: give at least one, or a target")
        if self.target is not None and self.deployments:
            raise ValueError("target: a route takes deployments or a target, not both")
        if self.target is not None and not isinstance(self.target.get("kind"), str):
            raise ValueError("target.kind: required (for example 'registry' or 'catalog')")
        return self


class DeploymentPublic(BaseModel):
    id: str
    provider: str
    model: str
    weight: float
    params: dict[str, Any]
    timeouts: dict[str, float]
    health: dict[str, Any]
    source: str = ""


class RoutePublic(BaseModel):
    id: str
    name: str
    kind: str
    strategy: str
    retries: int
    fallbacks: dict[str, list[str]]
    cache_ttl: float
    semantic_threshold: float | None
    semantic_embedding_route: str
    description: str
    builtin: bool
    deployments: list[DeploymentPublic]
    target: dict[str, Any] | None = None
    problem: str = ""


class PriceIn(Strict):
    input: float = Field(ge=0, le=10_000, description="USD per 1M input tokens")
    output: float = Field(ge=0, le=10_000, description="USD per 1M output tokens")
    cached_input: float | None = Field(default=None, ge=0, le=10_000)


class PricePublic(PriceIn):
    model: str


class LimitsIn(Strict):
    rpm: int | None = Field(default=None, ge=1, le=10_000_000)
    tpm: int | None = Field(default=None, ge=1, le=10_000_000_000)
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    budget_usd: float | None = Field(default=None, ge=0, le=10_000_000)
    budget_period: Literal["day", "month", "total"] = "month"
    allowed_routes: list[str] | None = Field(default=None, max_length=1000)


class LimitsPublic(LimitsIn):
    scope: str
    spent_usd: float | None = None


class RecordPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: Record) -> RecordPublic:
        values = {name: getattr(record, name) for name in cls.model_fields}
        values["fallbacks"] = ",".join(record.fallbacks)
        return cls(**values)

    id: str
    at: datetime
    key_id: str
    end_user: str
    api: str
    route: str
    deployment_id: str
    provider: str
    model: str
    status: int
    error_class: str
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cache_hit: bool
    stream: bool
    retries: int
    fallbacks: str
    prompt: str = ""
