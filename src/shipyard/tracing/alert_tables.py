"""Tables of the alerts (metadata database): the rules, with their evaluation state, and
the history of each time a rule fired (or was tested)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow


class AlertRuleRow(Base):
    """One rule: a metric over a window compared with a threshold, and where to say so.
    `state` is "ok", "pending" (the condition holds, not yet for `for_seconds`) or
    "firing"; `event_id` is the history row of the current firing."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_alert_rules_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    window_seconds: Mapped[int] = mapped_column(Integer)
    comparator: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    for_seconds: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    silenced_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # {url, format}
    allow_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    secret_enc: Mapped[str] = mapped_column(Text)  # sealed with platform.box
    state: Mapped[str] = mapped_column(String(16), default="ok")
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertEventRow(Base):
    """One firing of a rule, from `fired_at` to `resolved_at` (None while it fires), or
    one test notification (`kind` "test"). `deliveries` lists each notification sent:
    {event, url, status ("delivered", "failed", "silenced"), attempts, code, error, at}."""

    __tablename__ = "alert_events"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule_id: Mapped[str] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="alert")  # "alert" or "test"
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float] = mapped_column(Float)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    delivery_status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deliveries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
