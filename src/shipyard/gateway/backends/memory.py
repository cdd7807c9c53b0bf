"""One replica's counters and response cache, in process (`shipyard.plugins.Counters`
and `ResponseCache`). They run on the event loop, so each method is atomic;
`backends/redis.py` has the shared implementations for several replicas."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from shipyard.plugins import Refusal, Reservation, Window


class InProcessCounters:
    local = True

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (window index, total)
        self._budgets: dict[str, tuple[float, float]] = {}  # key -> (spent, expires at)

    def _bucket(self, key: str, window: float) -> tuple[int, float]:
        index = int(time.time() // window)
        current = self._windows.get(key)
        if current is None or current[0] != index:
            if len(self._windows) > 200_000:
                self._windows.clear()
            current = (index, 0.0)
            self._windows[key] = current
        return current

    def _budget(self, key: str) -> float:
        entry = self._budgets.get(key)
        if entry is None or entry[1] < time.time():
            return 0.0
        return entry[0]

    async def admit(
        self, windows: Sequence[Window], reservations: Sequence[Reservation]
    ) -> Refusal | None:
        buckets = [self._bucket(w.key, w.seconds) for w in windows]
        for i, (w, (index, total)) in enumerate(zip(windows, buckets, strict=True)):
            if total + w.amount > w.limit:
                return Refusal(window=i, retry_after=(index + 1) * w.seconds - time.time())
        spent = [self._budget(r.key) for r in reservations]
        for i, (r, already) in enumerate(zip(reservations, spent, strict=True)):
            if already + r.amount > r.budget:
                return Refusal(budget=i)
        for w, (index, total) in zip(windows, buckets, strict=True):
            self._windows[w.key] = (index, total + w.amount)
        now = time.time()
        for r, already in zip(reservations, spent, strict=True):
            self._budgets[r.key] = (already + r.amount, now + r.ttl)
        return None

    async def settle(
        self,
        adjustments: Sequence[tuple[str, float, float, float]],
        windows: Sequence[tuple[str, float, float]],
        admitted_at: float,
    ) -> None:
        now = time.time()
        for key, reserved, used, ttl in adjustments:
            if used != reserved:
                self._budgets[key] = (max(0.0, self._budget(key) + used - reserved), now + ttl)
        for key, delta, seconds in windows:
            index, total = self._bucket(key, seconds)
            if index != int(admitted_at // seconds) and delta < 0:
                continue  # reserved in a window that has ended
            self._windows[key] = (index, max(0.0, total + delta))

    async def seed(self, budgets: Sequence[tuple[str, float, float]]) -> None:
        now = time.time()
        for key, amount, ttl in budgets:
            if amount > self._budget(key):
                self._budgets[key] = (amount, now + ttl)

    async def spent(self, key: str) -> float:
        return self._budget(key)

    async def close(self) -> None:
        return None


class InProcessCache:
    def __init__(self, entries: int = 10_000) -> None:
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._cache_max = entries

    async def get(self, key: str) -> bytes | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            self._cache.pop(key, None)
            return None
        self._cache.move_to_end(key)
        return entry[0]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._cache[key] = (value, time.monotonic() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    async def close(self) -> None:
        return None
