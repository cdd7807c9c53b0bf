"""Local embeddings with sentence-transformers (torch imported on the first call)."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from typing import Any

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.providers.base import ProviderBase
from shipyard.plugins import EMBEDDINGS

Body = dict[str, Any]


class SentenceTransformersProvider(ProviderBase):
    capabilities = frozenset({EMBEDDINGS})

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._path = str(spec.options.get("model_path", ""))
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    if not os.path.isdir(self._path):
                        raise UpstreamError(
                            # the path is the operator's business, not the caller's
                            f"provider '{self.spec.name}': its model folder is missing",
                            error_class=ErrorClass.server_error,
                        )
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(self._path, device="cpu")
        return self._model

    def _encode(self, texts: list[str]) -> tuple[Any, int]:
        model = self._load()
        with self._lock:
            vectors = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
            tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        return vectors, tokens

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors, tokens = await asyncio.to_thread(self._encode, texts)
        b64 = body.get("encoding_format") == "base64"
        rows: list[Any] = (
            [base64.b64encode(vec.astype("<f4").tobytes()).decode() for vec in vectors]
            if b64
            else vectors.tolist()  # Python floats in one C loop
        )
        data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(rows)]
        return {
            "object": "list",
            "model": dep.model,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def healthy(self, dep: Deployment) -> bool:
        return os.path.isdir(self._path)


def create(spec: ProviderSpec) -> SentenceTransformersProvider:
    return SentenceTransformersProvider(spec)
