"""Tables of the evaluation capability (in the metadata database).

- `datasets`: a named, versioned set of items in a workspace; `latest` is the highest
  version number (0 before the first).
- `dataset_versions`: one row per version: what changed, who changed it, how many items
  it holds. Versions never change once written.
- `dataset_items`: an item's content lives in one row from the version that wrote it
  (`from_version`) until the version that replaced or removed it (`to_version`,
  exclusive; NULL while it is current). Version N holds the rows with
  `from_version <= N < to_version`: a change writes only what changed, and every older
  version stays readable as it was. `key` names the item across its rows.
- `eval_runs`, `eval_results`: an evaluation run of a target on a dataset version and
  the output and scores of each of its items (a run resumes by skipping the items that
  have a result).
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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow

# `expected` may be JSON null on purpose ("no answer"); SQL NULL means "not given"
NULLABLE_JSON = JSON(none_as_null=True)


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_datasets_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(2000), default="")
    latest: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_number"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(2000), default="")
    author: Mapped[str] = mapped_column(String(400), default="")
    source: Mapped[str] = mapped_column(String(16), default="api")  # api | upload | traces
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetItemRow(Base):
    __tablename__ = "dataset_items"
    __table_args__ = (
        Index("ix_dataset_items_span", "dataset_id", "from_version", "to_version"),
        Index("ix_dataset_items_key", "dataset_id", "key"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(32))  # the item, across its rows
    position: Mapped[int] = mapped_column(Integer)  # order of first addition
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inputs: Mapped[Any] = mapped_column(JSON)
    expected: Mapped[Any] = mapped_column(NULLABLE_JSON, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    source_trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RunRow(Base):
    __tablename__ = "eval_runs"
    __table_args__ = (
        Index("ix_eval_runs_ws", "workspace_id", "created_at"),
        Index("ix_eval_runs_status", "status"),
        Index("ix_eval_runs_subject", "workspace_id", "subject"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128), default="")
    # {"kind": "route"|"model"|"prompt"|"release", "ref": ..., "model": ...}
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    target_label: Mapped[str] = mapped_column(String(400), default="")
    # the registry version it evaluates (`prompt:support@3`), what gates look for
    subject: Mapped[str] = mapped_column(String(240), default="")
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    dataset_version: Mapped[int] = mapped_column(Integer)
    scorers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{"name", "config"}]
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # temperature, ...
    concurrency: Mapped[int] = mapped_column(Integer, default=2)
    # queued | running | completed | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    aggregates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(String(2000), default="")
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the worker executing it, until when (renewed as it goes; an expired lease is a run
    # whose worker stopped: any worker resumes it)
    worker: Mapped[str] = mapped_column(String(32), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ResultRow(Base):
    __tablename__ = "eval_results"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True
    )
    item_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str] = mapped_column(String(2000), default="")
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # name -> {value, reason}
    # written as soon as the output is (a resumed run never calls the target twice for
    # an item), scored with its chunk
    scored: Mapped[bool] = mapped_column(Boolean, default=False)
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OnlineRuleRow(Base):
    """Scorers applied on a schedule to a sample of a route's live traces; the scores
    are written as feedback (source `evaluation`), so they show on traces, aggregate
    into feedback metrics and drive alerts."""

    __tablename__ = "eval_online_rules"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_eval_online_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(128), default="")  # "": every route
    sample_rate: Mapped[float] = mapped_column(Float, default=0.1)
    scorers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # status, model...
    interval_s: Mapped[int] = mapped_column(Integer, default=60)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)  # whose calls judges make
    # traces that started before this (ns) have been considered
    watermark_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    scored: Mapped[int] = mapped_column(Integer, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(String(2000), default="")
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
