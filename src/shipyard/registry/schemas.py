"""The registry's API shapes: what a version of each kind holds, and what is returned."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from shipyard.inputs import Strict
from shipyard.registry.assets import ALIAS, NAME

Name = Annotated[str, Field(pattern=NAME)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Free = Annotated[dict[str, Any], Field(default_factory=dict)]


class ProviderSource(Strict):
    """Served by a gateway provider of the workspace, under the provider's model id."""

    kind: Literal["provider"]
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=200)


class RouteSource(Strict):
    """Served by another gateway route (a built-in local model, for example)."""

    kind: Literal["route"]
    route: str = Field(min_length=1, max_length=128)


class CatalogSource(Strict):
    """Served as the catalog entry of that name says."""

    kind: Literal["catalog"]
    entry: str = Field(min_length=1, max_length=128)


class GgufSource(Strict):
    kind: Literal["gguf"]
    artifact: Sha256
    file: str = Field(default="", max_length=500)


class HuggingFaceSource(Strict):
    """A Hugging Face model directory, uploaded as artifacts (never fetched)."""

    kind: Literal["huggingface"]
    artifacts: list[Sha256] = Field(min_length=1, max_length=1000)
    architecture: str = Field(default="", max_length=200)


class LoraSource(Strict):
    kind: Literal["lora"]
    base: str = Field(min_length=1, max_length=200, description="the base model's reference")
    artifact: Sha256


Source = Annotated[
    ProviderSource | RouteSource | CatalogSource | GgufSource | HuggingFaceSource | LoraSource,
    Field(discriminator="kind"),
]


class DatasetRef(Strict):
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(default="", max_length=64)


class Lineage(Strict):
    base_model: str | None = Field(default=None, max_length=200, description="a model ref")
    datasets: list[DatasetRef] = Field(default_factory=list, max_length=100)
    job: str | None = Field(default=None, max_length=200, description="the job that made it")
    evaluations: list[str] = Field(default_factory=list, max_length=100)


class ArtifactIn(Strict):
    sha256: Sha256
    name: str = Field(min_length=1, max_length=500)


class VersionCommon(Strict):
    metadata: Free
    tags: Free
    message: str = Field(default="", max_length=2000, description="the commit message")


class ModelVersionIn(VersionCommon):
    source: Source
    params: Free
    artifacts: list[ArtifactIn] = Field(default_factory=list, max_length=1000)
    lineage: Lineage = Field(default_factory=Lineage)


class Member(Strict):
    kind: Literal["model", "prompt", "pipeline"]
    name: Name
    version: int = Field(ge=1, le=2**31 - 1)


class ReleaseVersionIn(VersionCommon):
    members: list[Member] = Field(min_length=1, max_length=100)


class AssetIn(Strict):
    name: Name
    description: str = Field(default="", max_length=2000)
    tags: Free


class AssetUpdate(Strict):
    description: str | None = Field(default=None, max_length=2000)
    tags: dict[str, Any] | None = None


class AliasIn(Strict):
    version: int = Field(ge=1, le=2**31 - 1)


class VersionPublic(BaseModel):
    id: str
    kind: str
    name: str
    number: int
    body: dict[str, Any]
    metadata: dict[str, Any]
    tags: dict[str, Any]
    artifacts: list[dict[str, Any]]
    lineage: dict[str, Any]
    message: str
    author: str
    created_at: datetime
    aliases: list[str]


class AssetPublic(BaseModel):
    id: str
    kind: str
    name: str
    description: str
    tags: dict[str, Any]
    latest: int
    aliases: dict[str, int]
    created_by: str
    created_at: datetime
    updated_at: datetime


class ArtifactPublic(BaseModel):
    sha256: str
    name: str
    size: int
    format: str
    created_by: str
    created_at: datetime


class MovePublic(BaseModel):
    alias: str
    from_version: int | None
    to_version: int | None
    reason: str
    actor: str
    promotion_id: str | None
    at: datetime


class PromotionIn(Strict):
    kind: Literal["model", "prompt", "release", "pipeline"] = "model"
    name: Name
    version: int = Field(ge=1, le=2**31 - 1)
    environment: str = Field(pattern=ALIAS)
    note: str = Field(default="", max_length=2000)


class DecisionIn(Strict):
    note: str = Field(default="", max_length=2000)


class PromotionPublic(BaseModel):
    id: str
    kind: str
    name: str
    version: int
    environment: str
    state: str
    gates: list[dict[str, Any]]
    note: str
    requested_by: str
    decided_by: str | None
    decision_note: str
    created_at: datetime
    decided_at: datetime | None


class PolicyIn(Strict):
    four_eyes: bool = False
    gates: dict[str, Any] = Field(default_factory=dict, description="gate name -> its config")


class PolicyPublic(PolicyIn):
    environment: str
