"""Vector indexes: one Protocol (`shipyard.plugins.VectorIndex`), the embedded engine
here, pgvector for PostgreSQL beside it.

The embedded engine keeps one HNSW graph (hnswlib, cosine) per knowledge base (a
"space") in memory, with an inverted index of the chunks' tags for metadata filters:
- a space of at most `EXACT_BELOW` vectors, or a filter that leaves at most
  `EXACT_FILTERED` of them, is searched exactly (one matrix product), which is faster
  there and never misses;
- a larger filtered search walks the graph with the filter applied inside it.
Without hnswlib installed every search is exact.

The database is the truth: chunks and their vectors are committed there first, then
added here. A space is loaded on its first use: from its snapshot under the data dir
(written when the server stops) when one is there, reconciled with the database (what
is missing is added, what the database no longer holds is removed), else built from the
database. Removing a chunk removes its vector from the graph (marked deleted, its slot
reused by the next add) and from the snapshot the next time one is written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger("shipyard.retrieval")

EXACT_BELOW = 1024
EXACT_FILTERED = 256  # hnswlib hands vectors back at ~30 µs each: exact pays only for few
FILTERS_KEPT = 64  # allowed-id sets of recent filters, until the space changes
M, EF_CONSTRUCTION, EF_SEARCH = 16, 100, 64

Where = Mapping[str, Any]
Batch = tuple[Sequence[int], np.ndarray, Sequence[Mapping[str, Any]]]
Source = Callable[[str], Iterable[Batch]]  # space -> batches of (ids, vectors, tags)


def tag_values(tags: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (key, value) pairs a filter can match: scalar values, as JSON text."""
    out = []
    for key, value in tags.items():
        if isinstance(value, str):
            out.append((key, value))
        elif isinstance(value, bool | int | float):
            out.append((key, orjson.dumps(value).decode()))
    return out


def wanted(where: Where) -> list[tuple[str, set[str]]]:
    """A filter as (key, accepted values): all keys must match, a list accepts any."""
    out = []
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        out.append((key, {v if isinstance(v, str) else orjson.dumps(v).decode() for v in values}))
    return out


class _Space:
    def __init__(self, dims: int, ann: bool) -> None:
        self.dims = dims
        self.lock = threading.RLock()
        # what is searchable, and key -> value -> ids (keys and values interned: a tag
        # shared by many chunks is one string); nothing per id besides, to stay small
        self.live: set[int] = set()
        self.postings: dict[str, dict[str, set[int]]] = {}
        self._filtered: dict[tuple[tuple[str, tuple[str, ...]], ...], set[int]] = {}
        self.graph: Any = None
        self._exact: tuple[np.ndarray, np.ndarray] | None = None  # (ids, matrix) cache
        self.vectors: dict[int, np.ndarray] = {}  # only without hnswlib
        if ann:
            import hnswlib

            self.graph = hnswlib.Index(space="cosine", dim=dims)
            self.graph.init_index(
                max_elements=1024, ef_construction=EF_CONSTRUCTION, M=M, allow_replace_deleted=True
            )
            self.graph.set_ef(EF_SEARCH)
            self.graph.set_num_threads(1)

    def __len__(self) -> int:
        return len(self.live)

    def _changed(self) -> None:
        self._exact = None
        self._filtered.clear()

    def tag(self, i: int, tags: Mapping[str, Any]) -> None:
        self.live.add(i)
        for key, value in tag_values(tags):
            by_value = self.postings.get(key)
            if by_value is None:
                by_value = self.postings[sys.intern(key)] = {}
            ids = by_value.get(value)
            if ids is None:
                ids = by_value[sys.intern(value)] = set()
            ids.add(i)

    def add(
        self, ids: Sequence[int], vectors: np.ndarray, tags: Sequence[Mapping[str, Any]]
    ) -> None:
        again = [i for i in ids if i in self.live]  # updated in place, tags replaced
        if again:
            self._untag(again)
        self._changed()
        labels = np.asarray(ids, dtype=np.int64)
        if self.graph is not None:
            need = self.graph.get_current_count() + len(ids)  # deleted slots count too
            if need > self.graph.get_max_elements():
                self.graph.resize_index(max(need, 2 * self.graph.get_max_elements()))
            self.graph.add_items(vectors, labels, num_threads=1, replace_deleted=True)
        else:
            for i, v in zip(ids, vectors, strict=True):
                self.vectors[i] = np.asarray(v, dtype=np.float32)
        for i, t in zip(ids, tags, strict=True):
            self.tag(i, t)

    def _untag(self, ids: Sequence[int]) -> None:
        """Forget `ids`' tags: one pass over the postings (there is no per-id record)."""
        gone = set(ids)
        self.live -= gone
        self._changed()
        for key in list(self.postings):
            by_value = self.postings[key]
            for value in list(by_value):
                left = by_value[value]
                left -= gone
                if not left:
                    del by_value[value]
            if not by_value:
                del self.postings[key]

    def remove(self, ids: Iterable[int]) -> None:
        known = [i for i in ids if i in self.live]
        if not known:
            return
        self._untag(known)
        for i in known:
            if self.graph is not None:
                self.graph.mark_deleted(i)
            else:
                self.vectors.pop(i, None)

    def allowed(self, where: Where) -> set[int]:
        """The ids that `where` lets through (kept for the next search until a change)."""
        asked = wanted(where)
        if not asked:
            return self.live
        key = tuple(sorted((k, tuple(sorted(v))) for k, v in asked))
        found = self._filtered.get(key)
        if found is not None:
            return found
        out: set[int] | None = None
        for name, values in asked:
            postings = self.postings.get(name, {})
            some: set[int] = set().union(*(postings.get(v, set()) for v in values))
            out = some if out is None else out & some
            if not out:
                break
        found = out or set()
        if len(self._filtered) >= FILTERS_KEPT:
            self._filtered.pop(next(iter(self._filtered)))
        self._filtered[key] = found
        return found

    def matrix(self, ids: Sequence[int]) -> np.ndarray:
        if not ids:
            return np.zeros((0, self.dims), dtype=np.float32)
        if self.graph is not None:
            return np.asarray(
                self.graph.get_items(list(ids), return_type="numpy"), dtype=np.float32
            )
        return np.stack([self.vectors[i] for i in ids])

    def exact(
        self, query: np.ndarray, k: int, ids: Sequence[int] | None
    ) -> list[tuple[int, float]]:
        if ids is None:
            if self._exact is None:
                every = np.fromiter(self.live, dtype=np.int64, count=len(self.live))
                self._exact = (every, self.matrix(every.tolist()))
            labels, matrix = self._exact
        else:
            labels, matrix = np.asarray(ids, dtype=np.int64), self.matrix(ids)
        if not len(labels):
            return []
        sims = matrix @ query
        k = min(k, len(labels))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        return [(int(labels[n]), float(sims[n])) for n in top]

    def search(self, query: np.ndarray, k: int, where: Where | None) -> list[tuple[int, float]]:
        with self.lock:
            if not self.live:
                return []
            if where:
                allowed = self.allowed(where)
                if not allowed:
                    return []
                if self.graph is None or len(allowed) <= EXACT_FILTERED:
                    return self.exact(query, k, sorted(allowed))
                self.graph.set_ef(max(EF_SEARCH, k))
                labels, dists = self.graph.knn_query(
                    query, k=min(k, len(allowed)), filter=allowed.__contains__, num_threads=1
                )
            else:
                if self.graph is None or len(self.live) <= EXACT_BELOW:
                    return self.exact(query, k, None)
                self.graph.set_ef(max(EF_SEARCH, k))
                labels, dists = self.graph.knn_query(query, k=min(k, len(self.live)), num_threads=1)
        return [(int(i), 1.0 - float(d)) for i, d in zip(labels[0], dists[0], strict=True)]

    def save(self, path: Path) -> None:
        if self.graph is None:
            return
        with self.lock:
            tmp = path.with_suffix(".tmp")
            self.graph.save_index(str(tmp))
            os.replace(tmp, path)

    def load(self, path: Path) -> bool:
        if self.graph is None or not path.is_file():
            return False
        import hnswlib

        graph = hnswlib.Index(space="cosine", dim=self.dims)
        try:
            graph.load_index(str(path), allow_replace_deleted=True)  # add() grows it
        except (RuntimeError, ValueError, OSError):
            log.warning("vector index snapshot %s unreadable; rebuilding", path.name)
            return False
        graph.set_ef(EF_SEARCH)
        graph.set_num_threads(1)
        self.graph = graph
        return True


class EmbeddedIndex:
    """The embedded engine (see the module's docstring)."""

    def __init__(
        self,
        folder: Path,
        source: Source,
        *,
        ann: bool | None = None,  # None: when hnswlib is installed
    ) -> None:
        self.ann = importlib.util.find_spec("hnswlib") is not None if ann is None else ann
        self.engine = "hnswlib" if self.ann else "exact"
        self.folder = folder
        self.source = source
        self.spaces: dict[str, _Space] = {}
        self._lock = threading.Lock()

    def _path(self, space: str) -> Path:
        return self.folder / f"{space}.hnsw"

    def _space(self, space: str, dims: int) -> _Space:
        found = self.spaces.get(space)
        if found is not None and found.dims == dims:
            return found
        with self._lock:
            found = self.spaces.get(space)
            if found is None or found.dims != dims:
                found = self._open(space, dims)
                self.spaces[space] = found
            return found

    def _open(self, space: str, dims: int) -> _Space:
        """Load (snapshot + reconcile) or build a space from the database, in one pass
        over its rows."""
        opened = _Space(dims, self.ann)
        loaded = opened.load(self._path(space))
        have: set[int] = set()
        if loaded:
            have = set(int(i) for i in opened.graph.get_ids_list())
            have -= set(int(i) for i in _deleted(opened.graph, have))
        # tags for everything (and vectors for what the snapshot lacks) from the database
        seen: set[int] = set()
        for batch_ids, vectors, tags in self.source(space):
            seen.update(batch_ids)
            if loaded:
                missing = [n for n, i in enumerate(batch_ids) if i not in have]
                for i, t in zip(batch_ids, tags, strict=True):
                    if i in have:
                        opened.tag(i, t)
                if missing:
                    opened.add(
                        [batch_ids[n] for n in missing],
                        vectors[missing],
                        [tags[n] for n in missing],
                    )
            else:
                opened.add(batch_ids, vectors, tags)
        for i in have - seen:  # in the snapshot, gone from the database
            with contextlib.suppress(RuntimeError):
                opened.graph.mark_deleted(i)
        return opened

    # VectorIndex ----------------------------------------------------------------------

    def add(
        self, space: str, ids: Sequence[int], vectors: np.ndarray, tags: Sequence[Mapping[str, Any]]
    ) -> None:
        if not len(ids):
            return
        target = self._space(space, vectors.shape[1])
        with target.lock:
            target.add(ids, vectors, tags)

    def remove(self, space: str, ids: Sequence[int]) -> None:
        target = self.spaces.get(space)
        if target is not None:
            with target.lock:
                target.remove(ids)

    def search(
        self, space: str, dims: int, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        if dims <= 0:
            return []
        return self._space(space, dims).search(query, k, where)

    def count(self, space: str) -> int:
        target = self.spaces.get(space)
        return len(target) if target is not None else 0

    def drop(self, space: str) -> None:
        with self._lock:
            self.spaces.pop(space, None)
        with contextlib.suppress(FileNotFoundError):
            self._path(space).unlink()

    def save(self) -> None:
        """Snapshots of the spaces in memory (the server's stop)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, target in list(self.spaces.items()):
            try:
                target.save(self._path(name))
            except (RuntimeError, OSError):
                log.exception("vector index snapshot of %s failed", name)


def _deleted(graph: Any, ids: set[int]) -> list[int]:
    """Labels marked deleted in a loaded graph (hnswlib keeps them in its snapshot)."""
    out = []
    for i in ids:
        try:
            graph.get_items([i])
        except RuntimeError:
            out.append(i)
    return out
