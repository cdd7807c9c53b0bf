"""The evaluation capability's API shapes (datasets, items, runs, results), in one
module the SDK parses replies with, without importing the routes or the store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, JsonValue, model_validator

from shipyard.errors import InvalidInput
from shipyard.inputs import Strict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_ITEM_BYTES = 1 << 20  # one item's JSON
MAX_CHANGE = 50_000  # items one change adds, updates or removes
PARAMS = {"temperature", "top_p", "max_tokens", "seed", "stop", "response_format"}
Message = Annotated[str, Field(max_length=2000)]


class ItemIn(Strict):
    """One dataset item. `inputs` is what the target is given (e.g. `{"question": ...}`
    or `{"messages": [...]}`); `expected` what it should answer (optional)."""

    inputs: dict[str, JsonValue] = Field(min_length=1)
    expected: JsonValue = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    source_trace_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")

    def check_size(self, where: str) -> None:
        size = len(orjson.dumps([self.inputs, self.expected, self.metadata]))
        if size > MAX_ITEM_BYTES:
            raise InvalidInput(f"{where}: the item is {size} bytes, at most {MAX_ITEM_BYTES}")


class ItemUpdate(Strict):
    """Replace what is given of an item (the rest stays)."""

    id: str = Field(min_length=1, max_length=32)
    inputs: dict[str, JsonValue] | None = Field(default=None, min_length=1)
    expected: JsonValue = None
    metadata: dict[str, JsonValue] | None = None


class DatasetIn(Strict):
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=2000)
    items: list[ItemIn] = Field(default_factory=list, max_length=MAX_CHANGE)
    message: Message = ""


class DatasetUpdate(Strict):
    description: str = Field(max_length=2000)


class ChangeIn(Strict):
    """One new version: items added, updated (by id; what is given is replaced) and
    removed. `base_version`: refuse (409) unless it is still the latest."""

    add: list[ItemIn] = Field(default_factory=list, max_length=MAX_CHANGE)
    update: list[ItemUpdate] = Field(default_factory=list, max_length=MAX_CHANGE)
    remove: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=MAX_CHANGE
    )
    message: Message = ""
    base_version: int | None = Field(default=None, ge=0, le=2**31 - 1)


class FromTracesIn(Strict):
    trace_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]] = Field(
        min_length=1, max_length=1000
    )
    use_corrections: bool = True
    message: Message = ""


class VersionPublic(BaseModel):
    version: int
    message: str
    author: str
    source: str
    item_count: int
    added: int
    updated: int
    removed: int
    created_at: datetime


class DatasetPublic(BaseModel):
    id: str
    name: str
    description: str
    latest: int
    item_count: int
    created_by: str
    created_at: datetime
    updated_at: datetime


class ItemPublic(BaseModel):
    id: str
    inputs: dict[str, Any]
    expected: JsonValue
    metadata: dict[str, Any]
    source_trace_id: str | None
    version: int  # the version that wrote this content


class ItemPage(BaseModel):
    version: int
    items: list[ItemPublic]
    next_cursor: str | None


class TargetIn(Strict):
    """What is evaluated: a gateway `route` (or a `model` name the gateway serves), a
    registry `prompt` version (`name@3`, `name@production`) or a `release` member
    (`app@production/support`), rendered with each item's inputs as its variables and
    sent to `model` (default: the prompt's own model), or a registry `pipeline`
    version (`support-answer@3`, `support-answer@staging`), invoked with each item's
    inputs as its inputs (retrieval scorers read the retrieved ids from its spans)."""

    kind: Literal["route", "model", "prompt", "release", "pipeline"]
    ref: str = Field(min_length=1, max_length=200)
    model: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _shape(self) -> TargetIn:
        if self.kind == "release" and "/" not in self.ref:
            raise ValueError("ref: a release target is `name@alias/member`")
        if self.kind in {"route", "model", "pipeline"} and self.model is not None:
            raise ValueError("model: only prompt and release targets take a model")
        return self

    @property
    def label(self) -> str:
        via = f" via {self.model}" if self.model else ""
        return f"{self.kind}:{self.ref}{via}"


class ScorerIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    config: dict[str, JsonValue] = Field(default_factory=dict)
    # the scores' name in results (default: the scorer's): one scorer twice, two configs
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][\w.-]{0,63}$")


class RunIn(Strict):
    name: str = Field(default="", max_length=128)
    target: TargetIn
    dataset: str = Field(pattern=NAME)
    dataset_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="default: latest"
    )
    scorers: list[ScorerIn] = Field(min_length=1, max_length=20)
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description=f"chat parameters: {', '.join(sorted(PARAMS))}"
    )
    concurrency: int = Field(default=2, ge=1, le=16)
    subject: str | None = Field(
        default=None,
        pattern=r"^(model|prompt|release):[^\s]{1,200}$",
        description="the registry version this run evaluates (`model:support@3`); prompt "
        "and release targets name theirs",
    )

    @model_validator(mode="after")
    def _params(self) -> RunIn:
        unknown = sorted(set(self.params) - PARAMS)
        if unknown:
            raise ValueError(f"params: unknown {', '.join(unknown)}; known: {sorted(PARAMS)}")
        labels = [s.label or s.name for s in self.scorers]
        if len(set(labels)) != len(labels):
            raise ValueError("scorers: two scorers share a name; give one a label")
        return self


class RunPublic(BaseModel):
    id: str
    name: str
    target: dict[str, Any]
    subject: str | None
    dataset: str
    dataset_version: int
    scorers: list[dict[str, Any]]
    params: dict[str, Any]
    concurrency: int
    status: str
    total: int
    done: int
    errors: int
    aggregates: dict[str, Any]
    error: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ResultPublic(BaseModel):
    id: str  # the dataset item
    position: int
    inputs: dict[str, Any]
    expected: Any
    output: str | None
    error: str
    latency_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    scores: dict[str, Any]
    trace_id: str | None


class ResultPage(BaseModel):
    items: list[ResultPublic]
    next_cursor: str | None
