"""A request record: one per gateway call, the spend ledger's line."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Record:
    id: str
    at: datetime
    workspace_id: str
    key_id: str
    api: str
    status: int = 200
    end_user: str = ""
    route: str = ""
    deployment_id: str = ""
    provider: str = ""
    model: str = ""
    error_class: str = ""
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hit: bool = False
    stream: bool = False
    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)
