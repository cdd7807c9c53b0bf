"""Tables of review queues (in the metadata database).

- `review_queues`: a queue, its rules (what routes traces into it) and how many
  reviews an item wants (two or more give reviewer agreement).
- `review_items`: one trace in one queue (unique per queue), why it is there, its
  status (pending, done, skipped) and who it is assigned to.
- `review_actions`: what one reviewer did on one item (a review, with the thumbs and
  score it gave and the feedback row it wrote, or a skip); agreement compares them.
- `review_cursors`: the rule engine's watermarks per workspace (the traces already
  considered, the alert events already routed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow


class ReviewQueueRow(Base):
    __tablename__ = "review_queues"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_review_queues_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(2000), default="")
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reviews_wanted: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReviewItemRow(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("queue_id", "trace_id", name="uq_review_items_trace"),
        Index("ix_review_items_next", "queue_id", "status", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("review_queues.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    trace_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|skipped
    assigned_to: Mapped[str | None] = mapped_column(String(400), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reviews: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReviewActionRow(Base):
    __tablename__ = "review_actions"
    __table_args__ = (
        UniqueConstraint("item_id", "reviewer", name="uq_review_actions_reviewer"),
        Index("ix_review_actions_queue", "queue_id", "item_id"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"))
    queue_id: Mapped[str] = mapped_column(ForeignKey("review_queues.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(16))  # review | skip
    thumbs: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    feedback_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReviewCursorRow(Base):
    __tablename__ = "review_cursors"
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # traces | alerts
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
