"""Redis counters and response cache: several replicas share limits, budgets and
cached replies. Every check-and-count is one Lua script, so it is atomic across
replicas."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

_HIT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n + 1 > tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then ttl = tonumber(ARGV[2]) * 1000 end
  return ttl
end
redis.call('INCR', KEYS[1])
if n == 0 then redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) * 1000)) end
return 0
"""

_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_ADJUST = """
local v = tonumber(redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]))
if v < 0 then redis.call('SET', KEYS[1], '0') end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def connect(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, decode_responses=False, max_connections=256)


class RedisCounters:
    local = False

    def __init__(self, client: aioredis.Redis, prefix: str = "shipyard:") -> None:
        self._redis = client
        self._p = prefix
        self._hit = self._redis.register_script(_HIT)
        self._reserve = self._redis.register_script(_RESERVE)
        self._adjust = self._redis.register_script(_ADJUST)

    def _window_key(self, key: str, window: float) -> str:
        return f"{self._p}w:{key}:{int(time.time() // window)}"

    async def hit(self, key: str, limit: int, window: float) -> float:
        wait = await self._hit(keys=[self._window_key(key, window)], args=[limit, window])
        return float(wait) / 1000.0

    async def window_total(self, key: str, window: float) -> float:
        value = await self._redis.get(self._window_key(key, window))
        return float(value or 0)

    async def add(self, key: str, amount: float, window: float) -> None:
        k = self._window_key(key, window)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incrbyfloat(k, amount)
        pipe.expire(k, int(window) + 1)
        await pipe.execute()

    async def reserve(self, key: str, amount: float, budget: float, ttl: float) -> bool:
        ok = await self._reserve(keys=[self._p + "b:" + key], args=[amount, budget, int(ttl)])
        return bool(ok)

    async def adjust(self, key: str, delta: float, ttl: float) -> None:
        await self._adjust(keys=[self._p + "b:" + key], args=[delta, int(ttl)])

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
