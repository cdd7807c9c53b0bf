"""Tables of the tracing capability in the metadata database (spans live in the trace
store, not here)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow


class TracingSettingsRow(Base):
    """A workspace's masking and retention; a workspace without a row has `DEFAULT`."""

    __tablename__ = "tracing_settings"
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    detectors: Mapped[list[str]] = mapped_column(JSON, default=list)
    custom_patterns: Mapped[list[str]] = mapped_column(JSON, default=list)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: forever
    capture_content: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
