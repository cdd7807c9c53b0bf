"""Embedding similarity: the cosine between the output's and the expected text's
embeddings, through a gateway embeddings route (batched calls)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from shipyard.errors import ShipyardError
from shipyard.evaluation.scorers.base import output_text, references
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score, ScoreContext

# texts per embeddings call (the gateway takes at most 2048): large calls let the model
# batch texts of like length together
BATCH = 2048
NO_REFERENCE = Score(None, "no reference text")


class EmbeddingConfig(Strict):
    route: str = Field(default="all-minilm-l6-v2", min_length=1, max_length=200)


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The cosine of two vectors; None for an empty, zero, mismatched or non-finite one."""
    if len(a) != len(b):
        return None
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if not norm or not math.isfinite(norm):
        return None
    found = sum(x * y for x, y in zip(a, b, strict=True)) / norm
    return max(-1.0, min(1.0, found)) if math.isfinite(found) else None


class EmbeddingSimilarity:
    """Cosine similarity (-1..1) to the expected text (the best of several references).
    Texts go to the route in calls of at most `BATCH` texts (a case's texts share a
    call), each distinct text once (an output equal to its reference, a reference many
    items share); a failed call fails only its own cases."""

    name = "embedding_similarity"
    config_model = EmbeddingConfig
    higher_is_better = True

    async def score(self, cases: Sequence[Case], ctx: ScoreContext) -> list[Score]:
        config = EmbeddingConfig.model_validate(ctx.config)
        out: list[Score] = [NO_REFERENCE] * len(cases)
        chunk: list[tuple[int, list[str]]] = []  # (case index, [output, *references])
        size = 0
        for index, case in enumerate(cases):
            refs = references(case)
            if refs is None:
                continue
            texts = [output_text(case), *refs][:BATCH]
            if size + len(texts) > BATCH:
                await self._chunk(chunk, config.route, ctx, out)
                chunk, size = [], 0
            chunk.append((index, texts))
            size += len(texts)
        if chunk:
            await self._chunk(chunk, config.route, ctx, out)
        return out

    async def _chunk(
        self, chunk: list[tuple[int, list[str]]], route: str, ctx: ScoreContext, out: list[Score]
    ) -> None:
        distinct = list(dict.fromkeys(text for _, group in chunk for text in group))
        try:
            vectors = await ctx.embed(distinct, route)
        except ShipyardError as exc:
            for index, _ in chunk:
                out[index] = Score(None, f"embedding failed: {exc.detail}"[:1000])
            return
        if len(vectors) != len(distinct):
            why = f"the route answered {len(vectors)} vectors for {len(distinct)} texts"
            for index, _ in chunk:
                out[index] = Score(None, why)
            return
        of = dict(zip(distinct, vectors, strict=True))
        for index, group in chunk:
            mine = [of[text] for text in group]
            sims = [cosine(mine[0], other) for other in mine[1:]]
            found = [s for s in sims if s is not None]
            out[index] = Score(max(found)) if found else Score(None, "an empty embedding")
