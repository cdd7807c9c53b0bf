"""One replica's counters and response cache, in process (`shipyard.plugins.Counters`
and `ResponseCache`). They run on the event loop, so each method is atomic;
`backends/redis.py` has the shared implementations for several replicas."""

from __future__ import annotations

import time
from collections import OrderedDict


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

    async def hit(self, key: str, limit: int, window: float) -> float:
        index, total = self._bucket(key, window)
        if total + 1 > limit:
            return (index + 1) * window - time.time()
        self._windows[key] = (index, total + 1)
        return 0.0

    async def window_total(self, key: str, window: float) -> float:
        return self._bucket(key, window)[1]

    async def add(self, key: str, amount: float, window: float) -> None:
        index, total = self._bucket(key, window)
        self._windows[key] = (index, total + amount)

    def _budget(self, key: str) -> float:
        entry = self._budgets.get(key)
        if entry is None or entry[1] < time.time():
            return 0.0
        return entry[0]

    async def reserve(self, key: str, amount: float, budget: float, ttl: float) -> bool:
        spent = self._budget(key)
        if spent + amount > budget:
            return False
        self._budgets[key] = (spent + amount, time.time() + ttl)
        return True

    async def adjust(self, key: str, delta: float, ttl: float) -> None:
        self._budgets[key] = (max(0.0, self._budget(key) + delta), time.time() + ttl)

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
