"""Retrieval metrics for cases with relevant ids: recall@k, precision@k, MRR, nDCG@k.

Relevant ids: `case.expected` when it is a list, else `case.metadata["relevant_ids"]`.
Retrieved ids, best first: `case.retrieved` when the target's trace gave them (a
pipeline's retrieval spans), else `case.output` when it is a list (of ids, or of objects with
"id"), an object with an "ids" or "retrieved" list, or such JSON as text. Ids compare
as text (1 and "1" are the same id); a repeated id counts once, at its first rank.

    recall@k    = |relevant ∩ top k| / |relevant|
    precision@k = |relevant ∩ top k| / k
    MRR         = 1 / rank of the first relevant id in the top k (0: none)
    nDCG@k      = DCG / IDCG, binary relevance:
                  DCG  = Σ_{i=1..k} rel_i / log2(i + 1)   (rel_i: 1 if rank i relevant)
                  IDCG = Σ_{i=1..min(|relevant|, k)} 1 / log2(i + 1)
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import Field

from shipyard.evaluation.scorers.base import PerItem
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score


class KConfig(Strict):
    k: int = Field(default=5, ge=1, le=10_000)


def _ids(items: Any) -> list[str] | None:
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("id")
        if isinstance(item, str | int) and not isinstance(item, bool):
            out.append(str(item))
    return out


def relevant_ids(case: Case) -> set[str] | None:
    found = _ids(case.expected)
    if found is None:
        found = _ids((case.metadata or {}).get("relevant_ids"))
    return set(found) if found else None


def retrieved_ids(case: Case) -> list[str] | None:
    if case.retrieved is not None:
        return list(dict.fromkeys(case.retrieved))
    output = case.output
    if isinstance(output, str) and output.lstrip()[:1] in ("[", "{"):
        try:
            output = orjson.loads(output)
        except orjson.JSONDecodeError:
            return None
    if isinstance(output, dict):
        output = output.get("ids", output.get("retrieved"))
    found = _ids(output)
    return None if found is None else list(dict.fromkeys(found))


class _Retrieval(PerItem[KConfig]):
    config_model = KConfig

    def one(self, case: Case, config: KConfig) -> Score:
        relevant = relevant_ids(case)
        if relevant is None:
            return Score(None, "no relevant ids (expected list or metadata.relevant_ids)")
        retrieved = retrieved_ids(case)
        if retrieved is None:
            return Score(None, "the output is not a list of retrieved ids")
        top = retrieved[: config.k]
        return Score(self.metric([r in relevant for r in top], len(relevant), config.k))

    def metric(self, hits: list[bool], relevant: int, k: int) -> float:
        raise NotImplementedError


class RecallAtK(_Retrieval):
    name = "recall_at_k"

    def metric(self, hits: list[bool], relevant: int, k: int) -> float:
        return sum(hits) / relevant


class PrecisionAtK(_Retrieval):
    name = "precision_at_k"

    def metric(self, hits: list[bool], relevant: int, k: int) -> float:
        return sum(hits) / k


class Mrr(_Retrieval):
    name = "mrr"

    def metric(self, hits: list[bool], relevant: int, k: int) -> float:
        return next((1 / rank for rank, hit in enumerate(hits, 1) if hit), 0.0)


class NdcgAtK(_Retrieval):
    name = "ndcg_at_k"

    def metric(self, hits: list[bool], relevant: int, k: int) -> float:
        dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(hits, 1) if hit)
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(relevant, k) + 1))
        return dcg / ideal
