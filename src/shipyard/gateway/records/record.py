"""A request record: one per gateway call, the spend ledger's line."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson


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
    trace_id: str = ""  # the call's span in the trace store (tracing)
    span_id: str = ""
    parent_span_id: str = ""
    prompt: str = ""  # the registry prompt version that answered ("name@v3")

    def to_bytes(self) -> bytes:
        """The record as JSON (what the write-ahead log keeps): one orjson call."""
        try:
            return orjson.dumps(self)
        except orjson.JSONEncodeError:  # a string with lone surrogates, an int past 64 bits
            return orjson.dumps({k: _plain(getattr(self, k)) for k in _FIELDS})

    @classmethod
    def from_bytes(cls, data: bytes) -> Record:
        """The record `to_bytes` wrote (fields it does not know are ignored; a latency or
        cost written as null, from NaN, is 0). Raises ValueError on other bytes."""
        try:
            item = orjson.loads(data)
            values = {k: item[k] for k in _FIELDS if k in item}
            values["at"] = datetime.fromisoformat(values["at"])
            for name in _NUMBERS:  # orjson writes NaN and infinities as null
                if values.get(name, 0) is None:
                    values[name] = 0.0
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a record: {exc!r}") from None


_FIELDS = tuple(f.name for f in fields(Record))
_NUMBERS = ("latency_ms", "cost_usd")


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
        return 0
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
