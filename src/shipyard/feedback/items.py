"""One piece of feedback as it travels: built on the request path, appended to the
write-ahead log (its bytes are the acknowledgement), stored later by the writer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

SOURCES = ("end_user", "reviewer", "api", "evaluation")


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    id: str
    workspace_id: str
    trace_id: str
    span_id: str
    name: str
    source: str
    author: str
    at_ns: int
    thumbs: int | None = None  # 1 up, -1 down
    score: float | None = None
    label: str | None = None
    comment: str | None = None
    correction: Any = None
    end_user: str | None = None
    # who gave it in a review queue (the queue item it answers), if anyone
    queue_item_id: str | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, payload: bytes) -> FeedbackItem:
        try:
            raw = orjson.loads(payload)
            return cls(**raw)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"not a feedback item: {exc}") from None
