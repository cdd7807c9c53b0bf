"""What /api/feedback takes and answers (the SDK parses the same models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, JsonValue, model_validator

from shipyard.feedback.rules import Rule
from shipyard.inputs import Strict

TraceId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="32 lowercase hex")]
SpanId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description="16 lowercase hex")]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w .:/-]*$")]
MAX_CORRECTION = 100_000  # characters of its JSON


class FeedbackIn(Strict):
    """One piece of feedback: at least one of thumbs, score, label, comment, correction."""

    trace_id: TraceId
    span_id: SpanId | None = None
    name: Name = Field(default="feedback", description="what is judged: helpfulness, ...")
    thumbs: Literal["up", "down"] | None = None
    score: float | None = Field(default=None, allow_inf_nan=False, ge=-1e9, le=1e9)
    label: str | None = Field(default=None, min_length=1, max_length=128)
    comment: str | None = Field(default=None, min_length=1, max_length=10_000)
    correction: JsonValue = Field(default=None, description="the output that was expected")
    end_user: str | None = Field(default=None, min_length=1, max_length=256)
    source: Literal["end_user", "reviewer", "api"] | None = Field(
        default=None, description="default: end_user for app keys, reviewer for people"
    )

    @model_validator(mode="after")
    def _something(self) -> FeedbackIn:
        if (
            self.thumbs is None
            and self.score is None
            and self.label is None
            and self.comment is None
            and self.correction is None
        ):
            raise ValueError("give at least one of thumbs, score, label, comment, correction")
        if self.correction is not None and len(orjson.dumps(self.correction)) > MAX_CORRECTION:
            raise ValueError(f"correction: at most {MAX_CORRECTION} bytes of JSON")
        return self


class Accepted(BaseModel):
    ids: list[str]


class FeedbackPublic(BaseModel):
    id: str
    trace_id: str
    span_id: str | None
    name: str
    thumbs: Literal["up", "down"] | None
    score: float | None
    label: str | None
    comment: str | None
    correction: Any
    source: str
    author: str
    end_user: str | None
    route: str
    model: str
    prompt: str
    created_at: datetime


class FeedbackPage(BaseModel):
    items: list[FeedbackPublic]
    next_cursor: str | None


class MetricPointPublic(BaseModel):
    bucket: datetime
    group: str
    count: int
    score_mean: float | None
    thumbs_up: int
    thumbs_down: int
    thumbs_up_rate: float | None


# review queues -----------------------------------------------------------------------

QueueName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w .:-]*$")]


class QueueIn(Strict):
    """A review queue: its rules (`shipyard.feedback.rules`) and the reviews an item
    wants (2 or more to measure agreement between reviewers)."""

    name: QueueName
    description: str = Field(default="", max_length=2000)
    rules: list[Rule] = Field(default_factory=list, max_length=20)
    reviews_wanted: int = Field(default=1, ge=1, le=5)


class ProgressPublic(BaseModel):
    total: int
    pending: int
    done: int
    skipped: int
    percent: float  # (done + skipped) / total


class QueuePublic(BaseModel):
    id: str
    name: str
    description: str
    rules: list[dict[str, Any]]
    reviews_wanted: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    progress: ProgressPublic


class ItemPublic(BaseModel):
    id: str
    queue_id: str
    trace_id: str
    reason: str
    status: Literal["pending", "done", "skipped"]
    assigned_to: str | None
    reviews: int
    created_at: datetime
    done_at: datetime | None


class ItemsPage(BaseModel):
    items: list[ItemPublic]
    next_cursor: str | None
    progress: ProgressPublic


class NextPublic(BaseModel):
    item: ItemPublic | None  # None: nothing left for you in this queue
    progress: ProgressPublic


class AddItemsIn(Strict):
    trace_ids: list[TraceId] = Field(min_length=1, max_length=1000)
    reason: str = Field(default="added by hand", min_length=1, max_length=256)


class AddedPublic(BaseModel):
    added: int


class ReviewIn(Strict):
    """A reviewer's answer on a queue item: at least one of thumbs, score, label,
    comment, correction (stored as feedback with source "reviewer")."""

    name: Name = "feedback"
    thumbs: Literal["up", "down"] | None = None
    score: float | None = Field(default=None, allow_inf_nan=False, ge=-1e9, le=1e9)
    label: str | None = Field(default=None, min_length=1, max_length=128)
    comment: str | None = Field(default=None, min_length=1, max_length=10_000)
    correction: JsonValue = None

    @model_validator(mode="after")
    def _something(self) -> ReviewIn:
        given = (self.thumbs, self.score, self.label, self.comment, self.correction)
        if all(v is None for v in given):
            raise ValueError("give at least one of thumbs, score, label, comment, correction")
        return self


class ReviewedPublic(BaseModel):
    item: ItemPublic
    feedback_id: str | None  # None for a skip


class AssignIn(Strict):
    reviewer: str | None = Field(default=None, min_length=1, max_length=400)


class AgreementPublic(BaseModel):
    items: int  # items reviewed by two or more reviewers
    thumbs_pairs: int
    thumbs_agreement: float | None
    kappa: float | None  # Cohen's kappa over the thumbs pairs
    score_pairs: int
    score_mad: float | None  # mean absolute difference of the scores
