"""Tables of the registry capability (in the metadata database).

- `registry_catalog`: one row per catalog entry; `entry` is the whole entry as YAML
  would give it, and the columns beside it are what queries filter and order on.
- `registry_assets`: a registered model, prompt or release (by `kind`), named once per
  workspace; `registry_versions`: its immutable versions, numbered from 1.
- `registry_aliases`: `name@alias` -> a version (environments and custom names);
  `registry_alias_moves`: every move, which is what a rollback reads.
- `registry_promotions`: a request to point an environment's alias at a version, its
  gate results and its decision (four eyes for protected environments);
  `registry_policies`: per environment, whether four eyes are needed and which gates.
"""

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


class CatalogRow(Base):
    __tablename__ = "registry_catalog"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_registry_catalog_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(64), default="")
    max_context: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input_cost: Mapped[float | None] = mapped_column(Float, nullable=True)  # USD / 1k tokens
    output_cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    commercial_use: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssetRow(Base):
    __tablename__ = "registry_assets"
    __table_args__ = (
        UniqueConstraint("workspace_id", "kind", "name", name="uq_registry_assets_name"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # model | prompt | release
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(2000), default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    latest: Mapped[int] = mapped_column(Integer, default=0)  # the highest version number
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VersionRow(Base):
    """Immutable once written: nothing updates a version's body."""

    __tablename__ = "registry_versions"
    __table_args__ = (UniqueConstraint("asset_id", "number", name="uq_registry_versions_number"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("registry_assets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # model: {"source": ..., "params": ...}; prompt: {"template": ...}; release: {"members"}
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(String(2000), default="")
    author: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AliasRow(Base):
    __tablename__ = "registry_aliases"
    asset_id: Mapped[str] = mapped_column(
        ForeignKey("registry_assets.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("registry_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(400), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AliasMoveRow(Base):
    __tablename__ = "registry_alias_moves"
    __table_args__ = (Index("ix_registry_alias_moves_alias", "asset_id", "alias", "at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("registry_assets.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: removed
    reason: Mapped[str] = mapped_column(String(32))  # set | promotion | rollback | removed
    actor: Mapped[str] = mapped_column(String(400), default="")
    promotion_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromotionRow(Base):
    __tablename__ = "registry_promotions"
    __table_args__ = (Index("ix_registry_promotions_state", "workspace_id", "state"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    asset_id: Mapped[str] = mapped_column(ForeignKey("registry_assets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    environment: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected | cancelled
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(String(2000), default="")
    requested_by: Mapped[str] = mapped_column(String(400))  # "user:<id>" / "key:<id>"
    requested_label: Mapped[str] = mapped_column(String(400), default="")
    decided_by: Mapped[str | None] = mapped_column(String(400), nullable=True)
    decision_note: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PolicyRow(Base):
    """What promoting into one environment of a workspace takes (no row: the default,
    four eyes for `production` only, no gates)."""

    __tablename__ = "registry_policies"
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    four_eyes: Mapped[bool] = mapped_column(Boolean, default=False)
    gates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # gate name -> config
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookRow(Base):
    """A receiver of registry events (HMAC-signed JSON; the outbound-address rules of
    providers)."""

    __tablename__ = "registry_webhooks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every event
    secret_enc: Mapped[str] = mapped_column(String(2000))
    allow_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventRow(Base):
    """The outbox: an event is written in the transaction of the change it reports,
    then delivered by the registry's service (so a crash between the two loses none)."""

    __tablename__ = "registry_events"
    __table_args__ = (Index("ix_registry_events_pending", "state", "created_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # delivered | failed
    deliveries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BlobRow(Base):
    """An artifact a workspace uploaded: the blob is stored once by content (in the
    artifact store), and readable only by the workspaces that uploaded it."""

    __tablename__ = "registry_blobs"
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
