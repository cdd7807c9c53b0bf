"""Tables of the serving capability (in the metadata database).

- `canaries`: a canary of a registered model version on a gateway route: the route's
  traffic split between the stable alias and the `canary` alias by weight, the online
  metric that compares the arms, and what was decided (rolled back, promoted) with the
  figures behind it. The route's target before the canary is kept to restore it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow


class CanaryRow(Base):
    __tablename__ = "canaries"
    __table_args__ = (
        Index("ix_canaries_workspace", "workspace_id", "started_at"),
        Index("ix_canaries_status", "status"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))  # the registry model
    stable_alias: Mapped[str] = mapped_column(String(64))
    stable_version: Mapped[int] = mapped_column(Integer)
    canary_version: Mapped[int] = mapped_column(Integer)
    percent: Mapped[float] = mapped_column(Float)
    metric: Mapped[str] = mapped_column(String(64))  # a feedback name (online scores)
    margin: Mapped[float] = mapped_column(Float)
    min_samples: Mapped[int] = mapped_column(Integer)
    promote_after_s: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="running")
    previous_target: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
