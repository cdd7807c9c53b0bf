"""Embedding similarity: the cosine between the output's and the expected text's
embeddings, through a gateway embeddings route (one call for the whole batch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from shipyard.errors import ShipyardError
from shipyard.evaluation.scorers.base import output_text, references
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score, ScoreContext


class EmbeddingConfig(Strict):
    route: str = Field(default="all-minilm-l6-v2", min_length=1, max_length=200)


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if not norm or len(a) != len(b):
        return None
    return max(-1.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True)) / norm))


class EmbeddingSimilarity:
    """Cosine similarity (-1..1) to the expected text (the best of several references)."""

    name = "embedding_similarity"
    config_model = EmbeddingConfig
    higher_is_better = True

    async def score(self, cases: Sequence[Case], ctx: ScoreContext) -> list[Score]:
        config = EmbeddingConfig.model_validate(ctx.config)
        texts: list[str] = []
        spans: list[tuple[int, int] | None] = []
        for case in cases:
            refs = references(case)
            if refs is None:
                spans.append(None)
                continue
            spans.append((len(texts), len(refs)))
            texts += [output_text(case), *refs]
        if not texts:
            return [Score(None, "no reference text") for _ in cases]
        try:
            vectors = await ctx.embed(texts, config.route)
        except ShipyardError as exc:
            return [Score(None, f"embedding failed: {exc.detail}") for _ in cases]
        if len(vectors) != len(texts):
            why = f"the route answered {len(vectors)} vectors for {len(texts)} texts"
            return [Score(None, why) for _ in cases]
        out = []
        for span in spans:
            if span is None:
                out.append(Score(None, "no reference text"))
                continue
            start, count = span
            sims = [cosine(vectors[start], vectors[start + 1 + i]) for i in range(count)]
            found = [s for s in sims if s is not None]
            out.append(Score(max(found)) if found else Score(None, "an empty embedding"))
        return out
