"""Redis counters and response cache: several replicas and workers share limits,
budgets and cached replies. Admission and settlement are one Lua script each, so each
is atomic across replicas and costs one round trip."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from shipyard.plugins import Refusal, Reservation, Window

# KEYS: window keys, then budget keys. ARGV: the number of windows; per window its
# limit, seconds and amount; per budget its amount, budget and ttl. Returns {0} when
# admitted, {1, i} when window i refused, {2, i} when budget i would be overspent.
# Nothing changes on a refusal.
_ADMIT = """
local nw = tonumber(ARGV[1])
for w = 1, nw do
  local a = 2 + (w - 1) * 3
  local n = tonumber(redis.call('GET', KEYS[w]) or '0')
  if n + tonumber(ARGV[a + 2]) > tonumber(ARGV[a]) then return {1, w} end
end
local base = 2 + nw * 3
for b = 1, #KEYS - nw do
  local a = base + (b - 1) * 3
  local spent = tonumber(redis.call('GET', KEYS[nw + b]) or '0')
  if spent + tonumber(ARGV[a]) > tonumber(ARGV[a + 1]) then return {2, b} end
end
for w = 1, nw do
  local a = 2 + (w - 1) * 3
  redis.call('INCRBYFLOAT', KEYS[w], ARGV[a + 2])
  redis.call('PEXPIRE', KEYS[w], math.floor(tonumber(ARGV[a + 1]) * 1000) + 1000)
end
for b = 1, #KEYS - nw do
  local a = base + (b - 1) * 3
  redis.call('INCRBYFLOAT', KEYS[nw + b], ARGV[a])
  redis.call('EXPIRE', KEYS[nw + b], ARGV[a + 2])
end
return {0}
"""

# KEYS: budget keys, then window keys. ARGV: the number of budget keys; per key its
# delta and ttl. No counter goes below 0.
_SETTLE = """
local nb = tonumber(ARGV[1])
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 2
  local v = tonumber(redis.call('INCRBYFLOAT', KEYS[i], ARGV[a]))
  if v < 0 then redis.call('SET', KEYS[i], '0') end
  redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
end
return 1
"""

# KEYS: budget keys; ARGV: per key the ledger's amount and ttl. Raises, never lowers.
_SEED = """
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 2
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  if v < tonumber(ARGV[a]) then
    redis.call('SET', KEYS[i], ARGV[a], 'EX', ARGV[a + 1])
  end
end
return 1
"""


def connect(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, decode_responses=False, max_connections=256)


class RedisCounters:
    local = False

    def __init__(self, client: aioredis.Redis, prefix: str = "shipyard:") -> None:
        self._redis = client
        self._p = prefix
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._seed = self._redis.register_script(_SEED)

    def _window_key(self, key: str, seconds: float, at: float | None = None) -> str:
        return f"{self._p}w:{key}:{int((time.time() if at is None else at) // seconds)}"

    async def admit(
        self, windows: Sequence[Window], reservations: Sequence[Reservation]
    ) -> Refusal | None:
        keys = [self._window_key(w.key, w.seconds) for w in windows]
        keys += [self._p + "b:" + r.key for r in reservations]
        args: list[float | int] = [len(windows)]
        for w in windows:
            args += [w.limit, w.seconds, w.amount]
        for r in reservations:
            args += [r.amount, r.budget, int(r.ttl)]
        verdict = await self._admit(keys=keys, args=args)
        if verdict[0] == 1:
            window = windows[int(verdict[1]) - 1]  # windows are calendar-aligned: until its end
            return Refusal(
                window=int(verdict[1]) - 1,
                retry_after=window.seconds - time.time() % window.seconds,
            )
        if verdict[0] == 2:
            return Refusal(budget=int(verdict[1]) - 1)
        return None

    async def settle(
        self,
        adjustments: Sequence[tuple[str, float, float]],
        windows: Sequence[tuple[str, float, float]],
        admitted_at: float,
    ) -> None:
        now = time.time()
        # a window that has ended keeps what it reserved; a positive delta counts now
        moved = [
            (key, delta, seconds)
            for key, delta, seconds in windows
            if int(admitted_at // seconds) == int(now // seconds) or delta > 0
        ]
        if not adjustments and not moved:
            return
        keys = [self._p + "b:" + key for key, _, _ in adjustments]
        keys += [
            self._window_key(key, seconds, admitted_at if delta < 0 else now)
            for key, delta, seconds in moved
        ]
        args: list[float | int] = [len(adjustments)]
        for _, delta, ttl in adjustments:
            args += [delta, int(ttl)]
        for _, delta, seconds in moved:
            args += [delta, int(seconds) + 1]
        await self._settle(keys=keys, args=args)

    async def seed(self, budgets: Sequence[tuple[str, float, float]]) -> None:
        for i in range(0, len(budgets), 500):
            part = budgets[i : i + 500]
            args: list[float | int] = []
            for _, amount, ttl in part:
                args += [amount, int(ttl)]
            await self._seed(keys=[self._p + "b:" + key for key, _, _ in part], args=args)

    async def spent(self, key: str) -> float:
        return float(await self._redis.get(self._p + "b:" + key) or 0)

    async def close(self) -> None:
        await self._redis.aclose()


class RedisCache:
    """Shares the counters' client; closing is the counters' job."""

    def __init__(self, client: aioredis.Redis, prefix: str = "shipyard:") -> None:
        self._redis = client
        self._p = prefix + "c:"

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._p + key)
        return value if isinstance(value, bytes) else None  # the client decodes nothing

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._redis.set(self._p + key, value, px=max(1, int(ttl * 1000)))

    async def close(self) -> None:
        return None
