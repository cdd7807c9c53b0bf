"""The model catalog: one entry per model reachable through Shipyard, written by hand as
YAML (the shape below), searched and filtered, and queried by gateway routes ("the
cheapest model with tools and at least 32k context").

    models:
      - name: gpt-4o-mini
        type: chat
        provider: openai          # a gateway provider of the workspace ("builtin": a
        model: gpt-4o-mini        #   built-in local route named by `model`)
        capabilities: [chat, tools, summarization]
        benchmarks:
          accuracy: {mmlu: 0.82}
          latency_ms: 450
          cost_per_1k: {input: 0.00015, output: 0.0006}
        constraints:
          max_context_tokens: 128000
          max_output_tokens: 16384
          modalities: [text, image]
          licence: proprietary
          commercial_use: true
          data_residency: [us, eu]
        owner: platform-team

Functions take the caller's session; a change bumps the gateway's configuration version
(routes that query the catalog are resolved again, into the snapshot)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.gateway.config.snapshot import bump_version
from shipyard.inputs import Strict, invalid
from shipyard.registry.tables import CatalogRow
from shipyard.store import new_id, utcnow

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
Word = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
MAX_ENTRIES = 2000  # one import
BUILTIN = "builtin"  # provider of the built-in local models


class CostPer1k(Strict):
    input: float = Field(ge=0, le=1000, description="USD per 1k input tokens")
    output: float = Field(ge=0, le=1000, description="USD per 1k output tokens")


class Benchmarks(Strict):
    accuracy: dict[str, float] = Field(default_factory=dict, description="dataset -> score")
    latency_ms: float | None = Field(default=None, ge=0, le=3_600_000)
    cost_per_1k: CostPer1k | None = None

    @field_validator("accuracy")
    @classmethod
    def _scores(cls, value: dict[str, float]) -> dict[str, float]:
        if len(value) > 100:
            raise ValueError("at most 100 datasets")
        for name, score in value.items():
            if not 0 < len(name) <= 128 or not -1e9 <= score <= 1e9:
                raise ValueError(f"{name[:40]!r}: a dataset name of 1-128 characters, a score")
        return value


class Constraints(Strict):
    max_context_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    max_output_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    modalities: list[str] = Field(default_factory=lambda: ["text"], max_length=16)
    rate_limits: dict[str, int] = Field(default_factory=dict, description="e.g. rpm, tpm")
    quotas: dict[str, Any] = Field(default_factory=dict)
    licence: str = Field(default="", max_length=128)
    commercial_use: bool | None = None
    data_residency: list[str] = Field(default_factory=list, max_length=64)


class CatalogEntry(Strict):
    """A catalog entry as a team writes it (import/export round-trips it exactly)."""

    name: str = Field(pattern=NAME)
    type: Literal[
        "chat", "completion", "embedding", "classification", "rerank", "image", "audio"
    ] = "chat"
    description: str = Field(default="", max_length=4000)
    provider: str = Field(default="", max_length=64, description="gateway provider name")
    model: str = Field(default="", max_length=200, description="the provider's model id")
    capabilities: list[str] = Field(default_factory=list, max_length=64)
    benchmarks: Benchmarks = Field(default_factory=Benchmarks)
    constraints: Constraints = Field(default_factory=Constraints)
    sdks: list[str] = Field(default_factory=list, max_length=32)
    endpoint: str = Field(default="", max_length=500)
    guide: str = Field(default="", max_length=500, description="integrator guide link")
    owner: str = Field(default="", max_length=200)

    @field_validator("capabilities", "sdks")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        for word in value:
            if not 0 < len(word) <= 64:
                raise ValueError("each item: 1-64 characters")
        return sorted(set(value), key=value.index)


class CatalogEntryPublic(CatalogEntry):
    builtin: bool = False  # shipped with Shipyard (not stored; a workspace entry shadows it)
    # not written by anyone: a model a gateway route reaches that no entry describes yet
    # (listed so that every reachable model has an entry; never picked by a route query)
    unlisted: bool = False


def unlisted(routes: list[Any], known: list[CatalogEntryPublic]) -> list[CatalogEntryPublic]:
    """An entry for each (provider, model) the gateway's plain routes reach that no
    entry names: only what the route says (its kind, provider, model)."""
    seen = {(e.provider, e.model) for e in known} | {(BUILTIN, e.model) for e in known}
    found: dict[tuple[str, str], CatalogEntryPublic] = {}
    for route in routes:
        if route.target is not None or route.workspace_id is None:
            continue
        for d in route.deployments:
            key = (d.provider.name, d.model)
            if key in seen or key in found:
                continue
            name = _UNSAFE.sub("-", f"{d.provider.name}:{d.model}")[:128]
            found[key] = CatalogEntryPublic(
                name=name if name[:1].isalnum() else "m" + name[:127],
                type="embedding" if route.kind == "embedding" else "chat",
                description=f"reached through the route '{route.name}'; not described yet",
                provider=d.provider.name,
                model=d.model,
                unlisted=True,
            )
    return list(found.values())


class CatalogQuery(Strict):
    """A filter over the catalog; every field given must hold (unknown values do not
    qualify: an entry with no cost is never 'cost <= X')."""

    q: str | None = Field(default=None, max_length=200, description="text in name/description")
    type: str | None = Field(default=None, max_length=32)
    provider: str | None = Field(default=None, max_length=64)
    capabilities: list[str] = Field(default_factory=list, max_length=32)
    modalities: list[str] = Field(default_factory=list, max_length=16)
    min_context: int | None = Field(default=None, ge=0, le=10**9)
    min_output: int | None = Field(default=None, ge=0, le=10**9)
    max_input_cost: float | None = Field(default=None, ge=0, description="USD per 1k")
    max_output_cost: float | None = Field(default=None, ge=0, description="USD per 1k")
    max_cost: float | None = Field(default=None, ge=0, description="input + output per 1k")
    max_latency_ms: float | None = Field(default=None, ge=0)
    licence: list[str] = Field(default_factory=list, max_length=32, description="any of")
    commercial_use: bool | None = None
    residency: str | None = Field(default=None, max_length=32)
    benchmark: str | None = Field(default=None, max_length=128, description="dataset name")
    min_score: float | None = Field(default=None, description="on `benchmark`")
    order: str = Field(
        default="cost",
        max_length=140,
        pattern=r"^(cost|latency|context|name|accuracy:.+)$",
        description="cost | latency | context (largest first) | name | accuracy:<dataset>",
    )

    def matches(self, e: CatalogEntry) -> bool:
        c, b = e.constraints, e.benchmarks
        cost = b.cost_per_1k
        checks = (
            self.q is None or self.q.lower() in f"{e.name}\n{e.description}".lower(),
            self.type is None or e.type == self.type,
            self.provider is None or e.provider == self.provider,
            set(self.capabilities) <= set(e.capabilities),
            set(self.modalities) <= set(c.modalities),
            self.min_context is None or (c.max_context_tokens or 0) >= self.min_context,
            self.min_output is None or (c.max_output_tokens or 0) >= self.min_output,
            self.max_input_cost is None or (cost is not None and cost.input <= self.max_input_cost),
            self.max_output_cost is None
            or (cost is not None and cost.output <= self.max_output_cost),
            self.max_cost is None
            or (cost is not None and cost.input + cost.output <= self.max_cost),
            self.max_latency_ms is None
            or (b.latency_ms is not None and b.latency_ms <= self.max_latency_ms),
            not self.licence or c.licence.lower() in {x.lower() for x in self.licence},
            self.commercial_use is None or c.commercial_use == self.commercial_use,
            self.residency is None or self.residency in c.data_residency,
            self.min_score is None
            or (
                self.benchmark is not None
                and b.accuracy.get(self.benchmark, float("-inf")) >= self.min_score
            ),
        )
        return all(checks)

    def sort_key(self, e: CatalogEntry) -> tuple[Any, ...]:
        inf = float("inf")
        cost = e.benchmarks.cost_per_1k
        if self.order == "cost":
            return (cost.input + cost.output if cost else inf, e.name)
        if self.order == "latency":
            return (e.benchmarks.latency_ms if e.benchmarks.latency_ms is not None else inf, e.name)
        if self.order == "context":
            return (-(e.constraints.max_context_tokens or 0), e.name)
        if self.order.startswith("accuracy:"):
            score = e.benchmarks.accuracy.get(self.order.partition(":")[2])
            return (-score if score is not None else inf, e.name)
        return (e.name,)

    def select(self, entries: list[CatalogEntryPublic]) -> list[CatalogEntryPublic]:
        return sorted((e for e in entries if self.matches(e)), key=self.sort_key)


# Built-in entries ------------------------------------------------------------------------


def builtin_entries() -> list[CatalogEntryPublic]:
    """The local models Shipyard ships (`builtin_catalog.yaml`), as catalog entries
    (fresh copies: the file is read and parsed once a process)."""
    return [e.model_copy(deep=True) for e in _builtin()]


@cache
def _builtin() -> tuple[CatalogEntryPublic, ...]:
    text = resources.files("shipyard.registry").joinpath("builtin_catalog.yaml").read_text()
    return tuple(CatalogEntryPublic(**e, builtin=True) for e in yaml.safe_load(text)["models"])


# Service ---------------------------------------------------------------------------------


def _row(s: Session, workspace_id: str, name: str) -> CatalogRow | None:
    return s.scalars(
        select(CatalogRow).where(CatalogRow.workspace_id == workspace_id, CatalogRow.name == name)
    ).first()


def _fill(row: CatalogRow, entry: CatalogEntry) -> None:
    cost = entry.benchmarks.cost_per_1k
    row.type, row.provider = entry.type, entry.provider
    row.max_context = entry.constraints.max_context_tokens
    row.input_cost = cost.input if cost else None
    row.output_cost = cost.output if cost else None
    row.commercial_use = entry.constraints.commercial_use
    row.entry = entry.model_dump(mode="json")
    row.updated_at = utcnow()


def put_entry(s: Session, *, workspace_id: str, entry: CatalogEntry) -> tuple[CatalogRow, bool]:
    """Create or replace an entry; (the row, whether it was created)."""
    row = _row(s, workspace_id, entry.name)
    created = row is None
    if row is None:
        row = CatalogRow(id=new_id("cat"), workspace_id=workspace_id, name=entry.name)
        s.add(row)
    _fill(row, entry)
    s.flush()
    bump_version(s)
    return row, created


def get_entry(s: Session, *, workspace_id: str, name: str) -> CatalogEntryPublic:
    row = _row(s, workspace_id, name)
    if row is not None:
        return CatalogEntryPublic(**row.entry)
    for e in builtin_entries():
        if e.name == name:
            return e
    raise NotFound(f"catalog entry '{name}' not found")


def delete_entry(s: Session, *, workspace_id: str, name: str) -> None:
    row = _row(s, workspace_id, name)
    if row is None:
        raise NotFound(f"catalog entry '{name}' not found (built-in entries cannot be deleted)")
    s.delete(row)
    bump_version(s)


def entries(s: Session, *, workspace_id: str) -> list[CatalogEntryPublic]:
    """The workspace's entries, then the built-in ones it does not shadow, by name."""
    own = [
        CatalogEntryPublic(**r.entry)
        for r in s.scalars(select(CatalogRow).where(CatalogRow.workspace_id == workspace_id))
    ]
    names = {e.name for e in own}
    found = own + [e for e in builtin_entries() if e.name not in names]
    return sorted(found, key=lambda e: e.name)


def search(s: Session, *, workspace_id: str, query: CatalogQuery) -> list[CatalogEntryPublic]:
    return query.select(entries(s, workspace_id=workspace_id))


def set_benchmark(
    s: Session,
    *,
    workspace_id: str,
    name: str,
    dataset: str | None = None,
    score: float | None = None,
    latency_ms: float | None = None,
) -> CatalogEntryPublic:
    """Fill an entry's benchmarks (what an evaluation run reports)."""
    row = _row(s, workspace_id, name)
    if row is None:
        raise NotFound(f"catalog entry '{name}' not found in this workspace")
    entry = CatalogEntry(**row.entry)
    if dataset is not None and score is not None:
        entry.benchmarks.accuracy[dataset] = score
    if latency_ms is not None:
        entry.benchmarks.latency_ms = latency_ms
    entry = _valid(entry.model_dump(mode="json"), "benchmarks")
    _fill(row, entry)
    bump_version(s)
    return CatalogEntryPublic(**row.entry)


# YAML ------------------------------------------------------------------------------------


def _valid(item: Any, where: str) -> CatalogEntry:
    try:
        return CatalogEntry.model_validate(item)
    except ValidationError as exc:
        raise invalid(exc, where) from None


def parse_yaml(text: str) -> list[CatalogEntry]:
    """A catalog file (`models: [...]`, or a bare list, or one entry) -> entries;
    InvalidInput names the entry and field that is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"yaml: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(doc, dict) and "models" in doc:
        doc = doc["models"]
    elif isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise InvalidInput("yaml: expected `models:` with a list of entries")
    if len(doc) > MAX_ENTRIES:
        raise InvalidInput(f"yaml: at most {MAX_ENTRIES} entries in one import")
    found = [_valid(item, f"models.{i}") for i, item in enumerate(doc)]
    names = [e.name for e in found]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidInput(f"models: the name '{dup}' appears twice")
    return found


def import_yaml(
    s: Session, *, workspace_id: str, text: str, replace: bool = False
) -> dict[str, int]:
    """Create or update every entry of a catalog file; `replace` also deletes the
    workspace's entries the file does not name. All or nothing (one transaction)."""
    found = parse_yaml(text)
    counts = {"created": 0, "updated": 0, "deleted": 0}
    for entry in found:
        _, created = put_entry(s, workspace_id=workspace_id, entry=entry)
        counts["created" if created else "updated"] += 1
    if replace:
        names = [e.name for e in found]
        result = s.execute(
            delete(CatalogRow).where(
                CatalogRow.workspace_id == workspace_id, CatalogRow.name.not_in(names)
            )
        )
        counts["deleted"] = int(result.rowcount or 0)  # type: ignore[attr-defined]  # CursorResult
    bump_version(s)
    return counts


def export_yaml(s: Session, *, workspace_id: str, builtin: bool = False) -> str:
    """The workspace's entries as a catalog file (`import_yaml` reads it back)."""
    models = [
        e.model_dump(mode="json", exclude={"builtin"}, exclude_defaults=True)
        for e in entries(s, workspace_id=workspace_id)
        if builtin or not e.builtin
    ]
    return yaml.safe_dump({"models": models}, sort_keys=False, allow_unicode=True)


class ImportResult(BaseModel):
    created: int
    updated: int
    deleted: int
