"""Reranking a search: the built-in `cosine` reranker over lexical and hybrid results,
a reranker registered as a plugin, and the ones that fail or are not there."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.plugins import RERANKERS, Candidate, RerankContext
from tests.gateway.conftest import Env, make_env
from tests.retrieval.support import wait_indexed

DOCS = [
    {"name": "a.txt", "text": "Kittens purr. The parcel office opens at nine."},
    {"name": "b.txt", "text": "The parcel office is closed on Sundays and public holidays."},
    {"name": "c.txt", "text": "A parcel is a wrapped package sent by post."},
]


class Shortest:
    """Scores by length: the shortest chunk first."""

    name = "shortest"

    async def rerank(
        self, query: str, candidates: Sequence[Candidate], ctx: RerankContext
    ) -> list[float]:
        return [-float(len(c.text)) for c in candidates]


class Broken:
    name = "broken"

    async def rerank(self, query: str, candidates: Sequence[Candidate], ctx: Any) -> list[float]:
        raise RuntimeError("the model is not loaded; secret sk-should-not-show")


class Short:
    name = "short"

    async def rerank(self, query: str, candidates: Sequence[Candidate], ctx: Any) -> list[float]:
        return [1.0]  # one score, whatever the candidates


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for env in make_env(tmp_path):
        plugins = env.app.state.platform.plugins
        plugins.names(RERANKERS)  # read the installed ones, then add this module's
        plugins._groups[RERANKERS].update(
            {n: f"{__name__}:{n.capitalize()}" for n in ("shortest", "broken", "short")}
        )
        r = env.admin.post("/api/knowledge-bases", json={"name": "kb"})
        assert r.status_code == 201, r.text
        r = env.admin.post("/api/knowledge-bases/kb/documents", json={"documents": DOCS})
        assert r.status_code == 202, r.text
        assert wait_indexed(env.admin, "kb", r.json()["ingestion"]["id"])["status"] == "done"
        yield env


def _search(env: Env, **body: Any) -> Any:
    return env.admin.post("/api/knowledge-bases/kb/search", json={"query": "parcel", **body})


def test_cosine_orders_lexical_hits_by_the_stored_vectors(env: Env) -> None:
    semantic = {h["chunk_id"]: h["score"] for h in _search(env, mode="vector", k=10).json()["hits"]}
    r = _search(env, mode="lexical", k=2, rerank="cosine")
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) == 2
    scores = [h["rerank_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for h in hits:  # the stored vector against the query's: the vector search's cosine
        assert h["score"] == h["rerank_score"] == pytest.approx(semantic[h["chunk_id"]], abs=1e-4)
    best_two = sorted(semantic, key=lambda i: -semantic[i])[:2]
    assert [h["chunk_id"] for h in hits] == best_two  # all three match "parcel"
    plain = _search(env, mode="hybrid", k=3).json()["hits"]
    assert all(h["rerank_score"] is None for h in plain)


def test_a_plugin_reranker_decides_the_order(env: Env) -> None:
    r = _search(env, mode="hybrid", k=3, rerank="shortest")
    assert r.status_code == 200, r.text
    texts = [h["text"] for h in r.json()["hits"]]
    assert texts == sorted(texts, key=len) and len(texts) == 3


def test_unknown_failing_and_miscounting_rerankers_are_clear_errors(env: Env) -> None:
    r = _search(env, rerank="nope")
    assert r.status_code == 400 and r.json()["detail"].startswith("rerank: "), r.text
    assert "cosine" in r.json()["detail"]  # the known ones are named
    for name in ("broken", "short"):
        r = _search(env, rerank=name)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert f"'{name}'" in r.json()["detail"] and "sk-should-not-show" not in r.text
    r = _search(env, rerank="")
    assert r.status_code == 422 and "rerank" in r.text
