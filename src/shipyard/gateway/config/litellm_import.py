"""Read a LiteLLM proxy `config.yaml` (model_list, router_settings, litellm_settings)
into Shipyard providers and routes, so a team can switch without rewriting config."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.gateway.config.schemas import DeploymentIn, ProviderCreate, RouteIn, TimeoutsIn
from shipyard.gateway.config.vendors import VENDORS

# vendor prefix -> (kind, default base URL, options)
STRATEGIES = {
    "simple-shuffle": "weighted",
    "least-busy": "least_busy",
    "latency-based-routing": "lowest_latency",
    "usage-based-routing": "least_busy",
    "usage-based-routing-v2": "least_busy",
}
FALLBACK_KEYS = {
    "fallbacks": "any",
    "context_window_fallbacks": "context_length",
    "content_policy_fallbacks": "content_policy",
}


@dataclass
class ImportPlan:
    providers: list[ProviderCreate] = field(default_factory=list)
    routes: list[RouteIn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_env(value: Any) -> Any:
    """LiteLLM's `os.environ/NAME` references, resolved where the config is read (the CLI)."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value.split("/", 1)[1])
    if isinstance(value, dict):
        return {k: resolve_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v) for v in value]
    return value


def plan(config: Any) -> ImportPlan:
    if not isinstance(config, dict) or not isinstance(config.get("model_list"), list):
        raise InvalidInput("config: a LiteLLM config needs a model_list")
    out = ImportPlan()
    router = config.get("router_settings") or {}
    settings = config.get("litellm_settings") or {}
    strategy = STRATEGIES.get(router.get("routing_strategy", "simple-shuffle"), "weighted")
    retries = int(router.get("num_retries", settings.get("num_retries", 2)) or 0)
    fallbacks: dict[str, dict[str, list[str]]] = {}
    for source in (settings, router):
        for key, cls in FALLBACK_KEYS.items():
            for entry in source.get(key) or ():
                for name, targets in (entry or {}).items():
                    fallbacks.setdefault(name, {})[cls] = list(targets)
    for key in ("allowed_fails", "cooldown_time"):
        if key in router:
            out.notes.append(
                f"router_settings.{key} maps to the gateway's cooldown settings "
                "(SHIPYARD_GATEWAY_COOLDOWN_*), not to a route"
            )
    providers: dict[tuple[str, str, str | None, str], str] = {}
    deployments: dict[str, list[DeploymentIn]] = {}
    for i, item in enumerate(config["model_list"]):
        if not isinstance(item, dict) or not isinstance(item.get("litellm_params"), dict):
            raise InvalidInput(f"model_list.{i}: needs model_name and litellm_params")
        name = str(item.get("model_name") or "")
        params = item["litellm_params"]
        model = str(params.get("model") or "")
        if not name or not model:
            raise InvalidInput(f"model_list.{i}: model_name and litellm_params.model are required")
        vendor, _, bare = model.partition("/") if "/" in model else ("openai", "", model)
        known = VENDORS.get(vendor)
        kind, base, options = (
            (known.kind, known.base_url, known.options) if known else ("litellm", "", {})
        )
        if kind == "litellm":
            bare = model
            out.notes.append(f"model_list.{i}: vendor '{vendor}' goes through the litellm provider")
        base = params.get("api_base") or base
        options = dict(options)
        if params.get("api_version"):
            options["query"] = {"api-version": params["api_version"]}
        if kind != "litellm" and not base:
            raise InvalidInput(f"model_list.{i}: litellm_params.api_base is required for {vendor}")
        api_key = params.get("api_key")
        ident = (kind, base, api_key, repr(sorted(options.items())))
        if ident not in providers:
            pname = f"{vendor.replace('_', '-')}-{len(providers) + 1}"[:63].lower()
            providers[ident] = pname
            out.providers.append(
                ProviderCreate(
                    name=pname, kind=kind, base_url=base, api_key=api_key, options=options
                )
            )
        timeout = float(
            params.get("timeout")
            or params.get("request_timeout")
            or settings.get("request_timeout")
            or 600
        )
        first = float(params.get("stream_timeout") or min(timeout, 60))
        deployments.setdefault(name, []).append(
            DeploymentIn(
                provider=providers[ident],
                model=bare,
                weight=float(params.get("weight", 1) or 1),
                timeouts=TimeoutsIn(total=timeout, first_token=min(first, timeout)),
            )
        )
        for key in ("rpm", "tpm"):
            if key in params:
                out.notes.append(
                    f"model_list.{i}: per-deployment {key} is not enforced; set "
                    "limits on keys or the workspace"
                )
    for name, deps in deployments.items():
        fb = {
            cls: [t for t in targets if t in deployments]
            for cls, targets in fallbacks.get(name, {}).items()
        }
        out.routes.append(
            RouteIn(
                name=name,
                strategy=strategy,
                retries=min(retries, 10),
                fallbacks={k: v for k, v in fb.items() if v},
                deployments=deps,
            )
        )
    return out
