"""Semantic cache: a reply is reused for a request whose prompt embeds close enough
(cosine >= the route's threshold) to one answered before. In-process, per replica,
bounded; the exact-match cache is the shared one."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any


class SemanticCache:
    def __init__(self, max_entries: int = 1000) -> None:
        self._entries: dict[
            tuple[str, str], OrderedDict[int, tuple[list[float], bytes, float]]
        ] = {}
        self._max = max_entries
        self._seq = 0

    def lookup(
        self, scope: tuple[str, str], vector: list[float], threshold: float
    ) -> tuple[bytes, float] | None:
        entries = self._entries.get(scope)
        if not entries:
            return None
        now = time.monotonic()
        best, best_sim = None, -1.0
        for key, (vec, payload, expires) in list(entries.items()):
            if expires < now:
                del entries[key]
                continue
            sim = _cosine(vector, vec)
            if sim > best_sim:
                best, best_sim = payload, sim
        if best is not None and best_sim >= threshold:
            return best, best_sim
        return None

    def store(
        self, scope: tuple[str, str], vector: list[float], payload: bytes, ttl: float
    ) -> None:
        entries = self._entries.setdefault(scope, OrderedDict())
        self._seq += 1
        entries[self._seq] = (vector, payload, time.monotonic() + ttl)
        while len(entries) > self._max:
            entries.popitem(last=False)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for m in body.get("messages") or ():
        content = m.get("content")
        if isinstance(content, str):
            parts.append(f"{m.get('role')}: {content}")
        elif isinstance(content, list):
            parts.append(
                f"{m.get('role')}: "
                + " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            )
    if isinstance(body.get("prompt"), str):
        parts.append(body["prompt"])
    return "\n".join(parts)
