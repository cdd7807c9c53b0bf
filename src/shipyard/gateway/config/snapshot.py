"""The gateway's in-memory configuration snapshot. Built from the database (and the
built-in local models) on start and after every change; requests only read it. A
version row tells every replica when to rebuild it."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.crypto import SecretBox
from shipyard.gateway.config.builtins import builtin_routes
from shipyard.gateway.config.prices import SEED_PRICES
from shipyard.gateway.config.specs import (
    Deployment,
    Limits,
    Price,
    ProviderSpec,
    RouteSpec,
    Timeouts,
)
from shipyard.gateway.tables import (
    ConfigVersion,
    DeploymentRow,
    LimitRow,
    PriceRow,
    ProviderRow,
    RouteRow,
)
from shipyard.plugins import PromptSource, PromptSpec, Resolved, RouteResolver
from shipyard.store import Database

log = logging.getLogger("shipyard.gateway")
_SAFE = re.compile(r"[^A-Za-z0-9._@=:-]")  # a label in a deployment id (a header value)


@dataclass
class Snapshot:
    version: int = -1
    routes: dict[tuple[str | None, str], RouteSpec] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)
    # (workspace id, "name@alias") -> a prompt version, from the PromptSources
    prompts: dict[tuple[str, str], PromptSpec] = field(default_factory=dict)

    def route(self, workspace_id: str, name: str) -> RouteSpec | None:
        return self.routes.get((workspace_id, name)) or self.routes.get((None, name))

    def deployment(self, dep_id: str) -> Deployment | None:
        for route in self.routes.values():
            for dep in route.deployments:
                if dep.id == dep_id:
                    return dep
        return None

    def visible_routes(self, workspace_id: str) -> list[RouteSpec]:
        own = {n: r for (ws, n), r in self.routes.items() if ws == workspace_id}
        shared = {n: r for (ws, n), r in self.routes.items() if ws is None and n not in own}
        return sorted([*own.values(), *shared.values()], key=lambda r: r.name)


def read_version(db: Database) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(ConfigVersion.version).where(ConfigVersion.id == 1)) or 0)


def bump_version(s: Session) -> None:
    s.execute(
        update(ConfigVersion).where(ConfigVersion.id == 1).values(version=ConfigVersion.version + 1)
    )


def provider_spec(row: ProviderRow, box: SecretBox) -> ProviderSpec:
    return ProviderSpec(
        id=row.id,
        name=row.name,
        kind=row.kind,
        workspace_id=row.workspace_id,
        base_url=row.base_url,
        api_key=box.open(row.api_key_enc) if row.api_key_enc else None,
        headers=tuple((k, box.open(v)) for k, v in sorted((row.headers or {}).items())),
        options={**(row.options or {}), "allow_internal": row.allow_internal},
    )


def load(
    db: Database,
    box: SecretBox,
    builtin_options: dict[str, object],
    resolvers: Mapping[str, RouteResolver] | None = None,
    prompt_sources: Sequence[PromptSource] = (),
) -> Snapshot:
    snap = Snapshot()
    targeted: list[RouteRow] = []
    with db.transaction() as s:
        snap.version = int(
            s.scalar(select(ConfigVersion.version).where(ConfigVersion.id == 1)) or 0
        )
        providers = {p.id: provider_spec(p, box) for p in s.scalars(select(ProviderRow))}
        deployments: dict[str, list[DeploymentRow]] = {}
        for d in s.scalars(select(DeploymentRow).order_by(DeploymentRow.id)):
            deployments.setdefault(d.route_id, []).append(d)
        for r in s.scalars(select(RouteRow)):
            if r.target:
                targeted.append(r)
            deps = tuple(
                Deployment(
                    id=d.id,
                    route=r.name,
                    provider=providers[d.provider_id],
                    model=d.model,
                    weight=d.weight,
                    params=dict(d.params or {}),
                    timeouts=Timeouts(**(d.timeouts or {})),
                )
                for d in deployments.get(r.id, [])
                if d.provider_id in providers
            )
            snap.routes[(r.workspace_id, r.name)] = RouteSpec(
                id=r.id,
                name=r.name,
                workspace_id=r.workspace_id,
                kind=r.kind,
                deployments=deps,
                strategy=r.strategy,
                retries=r.retries,
                fallbacks={k: tuple(v) for k, v in (r.fallbacks or {}).items()},
                cache_ttl=r.cache_ttl,
                description=r.description,
                semantic_threshold=r.semantic_threshold,
                semantic_embedding_route=r.semantic_embedding_route,
                target=dict(r.target) if r.target else None,
            )
        snap.prices = dict(SEED_PRICES)
        for p in s.scalars(select(PriceRow)):
            snap.prices[p.model] = Price(p.input, p.output, p.cached_input)
        for lim in s.scalars(select(LimitRow)):
            v = dict(lim.values or {})
            if v.get("allowed_routes") is not None:
                v["allowed_routes"] = tuple(v["allowed_routes"])
            snap.limits[lim.scope] = Limits(**v)
        for route in builtin_routes(builtin_options):
            snap.routes.setdefault((None, route.name), route)
        for source in prompt_sources:
            snap.prompts.update(source.load(s))
        for r in targeted:  # after every plain route: a target may name one
            key = (r.workspace_id, r.name)
            snap.routes[key] = _resolve(s, snap, snap.routes[key], providers, resolvers or {})
    return snap


def _resolve(
    s: Session,
    snap: Snapshot,
    route: RouteSpec,
    providers: dict[str, ProviderSpec],
    resolvers: Mapping[str, RouteResolver],
) -> RouteSpec:
    """A targeted route with the deployments its resolver finds now; none (with the
    reason in `problem`) when the target resolves to nothing usable."""
    assert route.target is not None and route.workspace_id is not None
    kind = str(route.target.get("kind"))
    spec = {k: v for k, v in route.target.items() if k != "kind"}
    resolver = resolvers.get(kind)
    if resolver is None:
        return replace(route, problem=f"no resolver for target kind '{kind}' is installed")
    try:
        found = resolver.resolve(s, workspace_id=route.workspace_id, spec=spec)
    except Exception as exc:  # noqa: BLE001 - one bad target must not fail the snapshot
        log.warning("route %s: resolving its target failed", route.name, exc_info=True)
        return replace(route, problem=f"resolving the target failed: {exc}")
    by_name = {p.name: p for p in providers.values() if p.workspace_id == route.workspace_id}
    deps: list[Deployment] = []
    problems: list[str] = []
    for i, target in enumerate(found):
        deps += _deployments(snap, route, i, target, by_name, problems)
    if not deps:
        problem = "; ".join(problems) or "the target resolved to no model"
        return replace(route, deployments=(), problem=problem)
    return replace(route, deployments=tuple(deps), problem="; ".join(problems))


def _deployments(
    snap: Snapshot,
    route: RouteSpec,
    i: int,
    target: Resolved,
    providers: dict[str, ProviderSpec],
    problems: list[str],
) -> list[Deployment]:
    params: dict[str, Any] = dict(target.params or {})
    if target.problem:
        problems.append(f"{target.label}: {target.problem}")
        return []
    if target.route is not None:
        assert route.workspace_id is not None
        other = snap.route(route.workspace_id, target.route)
        if other is None or other.target is not None or not other.deployments:
            problems.append(f"{target.label}: no plain route named '{target.route}'")
            return []
        total = sum(max(d.weight, 0.0) for d in other.deployments) or 1.0
        return [
            replace(
                d,
                id=f"{route.id}.{i}.{d.id}",
                route=route.name,
                weight=target.weight * max(d.weight, 0.0) / total,
                params={**d.params, **params},
                source=target.label,
            )
            for d in other.deployments
        ]
    provider = providers.get(target.provider or "")
    if provider is None or not target.model:
        problems.append(f"{target.label}: no provider named '{target.provider}'")
        return []
    return [
        Deployment(
            id=f"{route.id}.{i}.{_SAFE.sub('_', target.label)[:80]}",
            route=route.name,
            provider=provider,
            model=target.model,
            weight=target.weight,
            params=params,
            source=target.label,
        )
    ]
