"""Tables of the training capability (in the metadata database).

- `ft_jobs`: a fine-tuning job: its base model, files, method and hyperparameters, its
  state (`queued` -> `running` -> `succeeded` | `failed` | `cancelled`), the step it
  reached, the lease of the worker running it (a job whose lease ran out is resumed by
  the next worker from its last checkpoint) and, once it succeeded, the model it made.
- `ft_events`: what a job reported, in order: messages, and metrics per step (loss,
  validation loss, tokens/s).
- `ft_checkpoints`: a job's saved checkpoints (a LoRA adapter, and the optimizer's state
  to resume from), with the metrics at that step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow


class JobRow(Base):
    __tablename__ = "ft_jobs"
    __table_args__ = (
        Index("ix_ft_jobs_workspace", "workspace_id", "created_at"),
        Index("ix_ft_jobs_status", "status"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(128))  # the base model's route
    method: Mapped[str] = mapped_column(String(16))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    suffix: Mapped[str] = mapped_column(String(64), default="")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    # the base model's GGUF and llama.cpp options, as its route served it at creation
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    trained_tokens: Mapped[int] = mapped_column(Integer, default=0)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # what the worker made: the adapter's folder and GGUF, the final metrics
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    worker: Mapped[str] = mapped_column(String(32), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    # who created it (`identity.stored`): the validation runs call the models as them
    actor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EventRow(Base):
    __tablename__ = "ft_events"
    __table_args__ = (Index("ux_ft_events_job_seq", "job_id", "seq", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("ft_jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # order within the job
    level: Mapped[str] = mapped_column(String(8), default="info")
    type: Mapped[str] = mapped_column(String(16), default="message")
    message: Mapped[str] = mapped_column(String(2000))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CheckpointRow(Base):
    __tablename__ = "ft_checkpoints"
    __table_args__ = (Index("ix_ft_checkpoints_job", "job_id", "step"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("ft_jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(String(1000))  # under the job's folder
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
