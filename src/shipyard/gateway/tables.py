"""Tables of the gateway capability."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow


class ProviderRow(Base):
    __tablename__ = "gateway_providers"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(String(500), default="")
    api_key_enc: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # sealed values
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    allow_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RouteRow(Base):
    __tablename__ = "gateway_routes"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="chat")
    strategy: Mapped[str] = mapped_column(String(32), default="weighted")
    retries: Mapped[int] = mapped_column(Integer, default=2)
    fallbacks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cache_ttl: Mapped[float] = mapped_column(Float, default=0.0)
    semantic_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    semantic_embedding_route: Mapped[str] = mapped_column(String(128), default="all-minilm-l6-v2")
    description: Mapped[str] = mapped_column(String(500), default="")
    # {"kind": "registry" | "catalog" | ..., ...}: deployments come from a RouteResolver
    target: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeploymentRow(Base):
    __tablename__ = "gateway_deployments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    route_id: Mapped[str] = mapped_column(ForeignKey("gateway_routes.id", ondelete="CASCADE"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("gateway_providers.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timeouts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PriceRow(Base):
    __tablename__ = "gateway_prices"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    input: Mapped[float] = mapped_column(Float)
    output: Mapped[float] = mapped_column(Float)
    cached_input: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LimitRow(Base):
    __tablename__ = "gateway_limits"
    scope: Mapped[str] = mapped_column(
        String(200), primary_key=True
    )  # key:<id> | workspace:<id> | user:<ws>:<name>
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConfigVersion(Base):
    """Bumped on every gateway configuration change; replicas poll it to reload."""

    __tablename__ = "gateway_config_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class RequestRecord(Base):
    __tablename__ = "gateway_requests"
    __table_args__ = (
        Index("ix_gateway_requests_ws_at", "workspace_id", "at"),
        Index("ix_gateway_requests_key_at", "key_id", "at"),
        Index("ux_gateway_requests_id", "id", unique=True),  # idempotent writes
    )
    # a sequential key keeps inserts at the B-tree's end (a random text key costs ~40% more)
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(40))  # the request id clients see
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    workspace_id: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    end_user: Mapped[str] = mapped_column(String(200), default="")
    api: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(128), default="")
    deployment_id: Mapped[str] = mapped_column(String(32), default="")
    provider: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[int] = mapped_column(Integer)
    error_class: Mapped[str] = mapped_column(String(32), default="")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    fallbacks: Mapped[str] = mapped_column(String(500), default="")
    trace_id: Mapped[str] = mapped_column(String(32), default="")  # the call's trace
    prompt: Mapped[str] = mapped_column(String(200), default="")  # the prompt version
