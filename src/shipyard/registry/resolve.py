"""How the gateway reaches the registry: two `RouteResolver`s, resolved when the
gateway builds its configuration snapshot (never per request).

- `registry`: `{"kind": "registry", "refs": [{"ref": "support@production", "weight":
  90}, {"ref": "support@canary", "weight": 10}]}`: each reference names a registered
  model's version (an alias, a number, or the latest), or the model a release pins
  (`app@production/support`); its `source` says what serves it (a provider and model
  id, another route, or a catalog entry). Two references with weights are a canary
  split.
- `catalog`: `{"kind": "catalog", "query": {...}, "order": "cost"}`: the first catalog
  entry the query selects ("the cheapest model with tools and >= 32k context"); it
  changes when the catalog does."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy.orm import Session

from shipyard.errors import NotFound
from shipyard.inputs import Strict, invalid
from shipyard.plugins import Resolved
from shipyard.registry import assets, catalog


class WeightedRef(Strict):
    ref: str = Field(min_length=1, max_length=200)
    weight: float = Field(default=1.0, gt=0, le=1000)


class RegistryTarget(Strict):
    refs: list[WeightedRef] = Field(min_length=1, max_length=10)


class CatalogTarget(Strict):
    query: catalog.CatalogQuery = Field(default_factory=catalog.CatalogQuery)


def source_target(
    s: Session, *, workspace_id: str, source: dict[str, Any], weight: float, label: str
) -> Resolved:
    """What serves a model version's `source`."""
    kind = source.get("kind")
    if kind == "provider":
        return Resolved(
            weight=weight, label=label, provider=source.get("provider"), model=source.get("model")
        )
    if kind == "route":
        return Resolved(weight=weight, label=label, route=source.get("route"))
    if kind == "catalog":
        try:
            entry = catalog.get_entry(s, workspace_id=workspace_id, name=str(source.get("entry")))
        except NotFound as exc:
            return Resolved(weight=weight, label=label, problem=exc.detail)
        return entry_target(entry, weight=weight, label=label)
    return Resolved(
        weight=weight,
        label=label,
        problem=f"a '{kind}' source is not served by the gateway (give the version a"
        " provider, route or catalog source)",
    )


def entry_target(entry: catalog.CatalogEntry, *, weight: float, label: str) -> Resolved:
    if entry.provider == catalog.BUILTIN:
        return Resolved(weight=weight, label=label, route=entry.model)
    if not entry.provider or not entry.model:
        return Resolved(
            weight=weight, label=label, problem=f"catalog entry '{entry.name}' names no provider"
        )
    return Resolved(weight=weight, label=label, provider=entry.provider, model=entry.model)


class RegistryResolver:
    kind = "registry"

    def check(self, s: Session, *, workspace_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            target = RegistryTarget.model_validate(spec)
        except ValidationError as exc:
            raise invalid(exc, "target") from None
        for i, item in enumerate(target.refs):
            head, slash, member = item.ref.partition("/")
            ref = assets.parse_ref(head, param=f"target.refs.{i}.ref")
            kind = "release" if slash else "model"
            assets.get_asset(s, workspace_id=workspace_id, kind=kind, name=ref.name)
            if slash:
                assets.parse_ref(member, param=f"target.refs.{i}.ref")
        return target.model_dump()

    def resolve(self, s: Session, *, workspace_id: str, spec: dict[str, Any]) -> list[Resolved]:
        target = RegistryTarget.model_validate(spec)
        found = []
        for item in target.refs:
            try:
                _, version = assets.resolve_member(
                    s, workspace_id=workspace_id, kind="model", raw=item.ref
                )
            except NotFound as exc:
                found.append(Resolved(weight=item.weight, label=item.ref, problem=exc.detail))
                continue
            _, slash, member = item.ref.partition("/")
            if slash:  # the member a release pins: "app@dev/support=support@v2"
                label = f"{item.ref}={member}@v{version.number}"
            else:
                label = f"{item.ref if '@' in item.ref else item.ref + '@latest'}=v{version.number}"
            source = dict(version.body.get("source") or {})
            resolved = source_target(
                s, workspace_id=workspace_id, source=source, weight=item.weight, label=label
            )
            params = dict(version.body.get("params") or {})
            if params:
                resolved = replace(resolved, params={**params, **(resolved.params or {})})
            found.append(resolved)
        return found


class CatalogResolver:
    kind = "catalog"

    def check(self, s: Session, *, workspace_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            target = CatalogTarget.model_validate(spec)
        except ValidationError as exc:
            raise invalid(exc, "target") from None
        return target.model_dump(exclude_defaults=True)

    def resolve(self, s: Session, *, workspace_id: str, spec: dict[str, Any]) -> list[Resolved]:
        query = CatalogTarget.model_validate(spec).query
        for entry in catalog.search(s, workspace_id=workspace_id, query=query):
            found = entry_target(entry, weight=1.0, label=f"catalog:{entry.name}")
            if not found.problem:
                return [found]
        return [Resolved(weight=1.0, label="catalog", problem="no catalog entry qualifies")]
