"""Semantic cache: a reply is reused for a request whose prompt embeds close enough
(cosine >= the route's threshold) to one answered before. In-process, per replica; the
exact-match cache is the shared one.

Replies are kept per scope (workspace, route and a hash of every other parameter), so a
caller varying `seed` makes a new scope per call: the bound is therefore global, in
entries and in bytes (payload plus vector), evicting the least recently used entry of
any scope; a scope also keeps at most `max_per_scope` entries, which bounds a lookup's
scan. Vectors are stored as packed doubles with their norm."""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

Scope = tuple[str, str]
_OVERHEAD = 200  # bytes of bookkeeping per entry, roughly


@dataclass(slots=True)
class _Entry:
    scope: Scope
    vector: array[float]
    norm: float
    payload: bytes
    expires: float

    @property
    def size(self) -> int:
        return len(self.payload) + 8 * len(self.vector) + _OVERHEAD


class SemanticCache:
    def __init__(
        self,
        max_entries: int = 5_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_per_scope: int = 1_000,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_per_scope = max_per_scope
        self._lru: OrderedDict[int, _Entry] = OrderedDict()  # oldest use first
        self._scopes: dict[Scope, OrderedDict[int, None]] = {}
        self._bytes = 0
        self._seq = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def scopes(self) -> int:
        return len(self._scopes)

    def lookup(
        self, scope: Scope, vector: list[float], threshold: float
    ) -> tuple[bytes, float] | None:
        now = time.monotonic()
        with self._lock:  # copy the scope's entries; compare outside the lock
            ids = self._scopes.get(scope)
            if not ids:
                return None
            entries = [(i, self._lru[i]) for i in ids]
        norm = math.sqrt(sum(x * x for x in vector))
        best, best_sim, expired = None, -1.0, []
        for seq, entry in entries:
            if entry.expires < now:
                expired.append(seq)
                continue
            sim = _cosine(vector, norm, entry)
            if sim > best_sim:
                best, best_sim = seq, sim
        with self._lock:
            for seq in expired:
                self._drop(seq)
            if best is None or best_sim < threshold or best not in self._lru:
                return None
            self._lru.move_to_end(best)
            return self._lru[best].payload, best_sim

    def store(self, scope: Scope, vector: list[float], payload: bytes, ttl: float) -> None:
        packed = array("d", vector)
        norm = math.sqrt(sum(x * x for x in packed))
        entry = _Entry(scope, packed, norm, payload, time.monotonic() + ttl)
        if entry.size > self.max_bytes:
            return
        with self._lock:
            self._seq += 1
            self._lru[self._seq] = entry
            self._scopes.setdefault(scope, OrderedDict())[self._seq] = None
            self._bytes += entry.size
            ids = self._scopes[scope]
            while len(ids) > self.max_per_scope:
                self._drop(next(iter(ids)))
            while len(self._lru) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._lru)))

    def _drop(self, seq: int) -> None:
        entry = self._lru.pop(seq, None)
        if entry is None:
            return
        self._bytes -= entry.size
        ids = self._scopes[entry.scope]
        ids.pop(seq, None)
        if not ids:
            del self._scopes[entry.scope]


def _cosine(a: list[float], norm_a: float, b: _Entry) -> float:
    if not norm_a or not b.norm:
        return 0.0
    return sum(x * y for x, y in zip(a, b.vector, strict=False)) / (norm_a * b.norm)


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
