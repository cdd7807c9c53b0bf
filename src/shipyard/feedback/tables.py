"""Tables of the feedback capability (in the metadata database).

- `feedback`: one row per piece of feedback on a trace (or one span of it): thumbs,
  a numeric score, a categorical label, a comment, a correction (the output the user
  expected), any of them together; with its author, its source and, copied from the
  trace once its spans are stored, the route, model and prompt version it is about
  (what feedback metrics group by).
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
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_trace", "workspace_id", "trace_id"),
        Index("ix_feedback_time", "workspace_id", "at_s"),
        Index("ix_feedback_unresolved", "resolved", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16), default="")
    name: Mapped[str] = mapped_column(String(64), default="feedback")
    thumbs: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)  # 1 up, -1 down
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    correction: Mapped[Any] = mapped_column(JSON, nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # end_user | reviewer | api | evaluation
    author: Mapped[str] = mapped_column(String(400))  # the actor's ref (user:..., key:...)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    queue_item_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    route: Mapped[str] = mapped_column(String(128), default="")
    model: Mapped[str] = mapped_column(String(256), default="")
    prompt: Mapped[str] = mapped_column(String(256), default="")
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)  # route/model copied
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # created_at in epoch seconds: metric buckets are integer arithmetic on every engine
    at_s: Mapped[int] = mapped_column(BigInteger)
