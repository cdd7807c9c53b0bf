"""Public shape of an audit entry (shared by the API and the SDK)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class AuditEventPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    target: str
    workspace_id: str | None
    client_addr: str
    outcome: str
    status: int
    detail: str
