"""Rerankers (`shipyard.plugins.Reranker`): the built-in one, and how a search finds
the one it names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.plugins import RERANKERS, Candidate, Plugins, RerankContext, Reranker


class Cosine:
    """The candidates' stored vectors against the query's: the order a vector search
    would give, applied to what a lexical or hybrid search found."""

    name = "cosine"

    async def rerank(
        self, query: str, candidates: Sequence[Candidate], ctx: RerankContext
    ) -> list[float]:
        if not candidates:
            return []
        matrix = np.stack([np.asarray(c.vector, dtype=np.float32) for c in candidates])
        return [float(x) for x in matrix @ np.asarray(ctx.query_vector, dtype=np.float32)]


def load(plugins: Plugins, name: str) -> Reranker:
    """The reranker registered as `name`; an unknown one is the request's mistake."""
    try:
        factory = plugins.load(RERANKERS, name)
    except KeyError:
        known = ", ".join(sorted(plugins.names(RERANKERS))) or "none"
        raise InvalidInput(
            f"rerank: no reranker '{name}' is installed (known: {known})", param="rerank"
        ) from None
    reranker: Reranker = factory()
    return reranker
