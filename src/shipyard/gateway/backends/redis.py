"""Redis counters and response cache: several replicas and workers share limits,
budgets and cached replies. Admission and settlement are one Lua script each, so each
is atomic across replicas and costs one round trip."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from shipyard.plugins import Refusal, Reservation, Window

# A budget is two keys: `b:<key>`, what settled calls spent, and `r:<key>`, a hash of
# what each replica holds in reservations for calls in flight. A replica's holdings count
# while its heartbeat `h:<replica>` lives (refreshed by every admission and settlement
# and every few seconds): a replica killed mid-call stops holding budget within
# HEARTBEAT seconds instead of for the rest of the period.

# KEYS: window keys, then per budget its spent and held keys. ARGV: the number of
# windows, the replica, the heartbeat key, its ttl; per window its limit, seconds and
# amount; per budget its amount, budget and ttl. Returns {0} when admitted, {1, i} when
# window i refused, {2, i} when budget i would be overspent. A refusal changes no count.
_ADMIT = """
local nw, me, beat, beat_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local prefix = string.sub(beat, 1, #beat - #me - 2)
for w = 1, nw do
  local a = 5 + (w - 1) * 3
  local n = tonumber(redis.call('GET', KEYS[w]) or '0')
  if n + tonumber(ARGV[a + 2]) > tonumber(ARGV[a]) then return {1, w} end
end
local base = 5 + nw * 3
local nb = (#KEYS - nw) / 2
for b = 1, nb do
  local a = base + (b - 1) * 3
  local spent = tonumber(redis.call('GET', KEYS[nw + 2 * b - 1]) or '0')
  local held_key = KEYS[nw + 2 * b]
  local fields = redis.call('HGETALL', held_key)
  for i = 1, #fields, 2 do
    local replica, amount = fields[i], tonumber(fields[i + 1])
    if replica == me or redis.call('EXISTS', prefix .. 'h:' .. replica) == 1 then
      spent = spent + amount
    else
      redis.call('HDEL', held_key, replica)  -- a replica gone: its calls ended with it
    end
  end
  if spent + tonumber(ARGV[a]) > tonumber(ARGV[a + 1]) then return {2, b} end
end
for w = 1, nw do
  local a = 5 + (w - 1) * 3
  redis.call('INCRBYFLOAT', KEYS[w], ARGV[a + 2])
  redis.call('PEXPIRE', KEYS[w], math.floor(tonumber(ARGV[a + 1]) * 1000) + 1000)
end
for b = 1, nb do
  local a = base + (b - 1) * 3
  redis.call('HINCRBYFLOAT', KEYS[nw + 2 * b], me, ARGV[a])
  redis.call('EXPIRE', KEYS[nw + 2 * b], ARGV[a + 2])
end
redis.call('SET', beat, '1', 'EX', beat_ttl)
return {0}
"""

# KEYS: per budget its spent and held keys, then window keys. ARGV: the number of
# budgets, the replica, the heartbeat key, its ttl; per budget what was reserved, what
# was used and the ttl; per window its delta and ttl. No counter goes below 0.
_SETTLE = """
local nb, me, beat, beat_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
for b = 1, nb do
  local a = 5 + (b - 1) * 3
  local left = tonumber(redis.call('HINCRBYFLOAT', KEYS[2 * b], me, -tonumber(ARGV[a])))
  if left <= 1e-12 then redis.call('HDEL', KEYS[2 * b], me) end
  redis.call('INCRBYFLOAT', KEYS[2 * b - 1], ARGV[a + 1])
  redis.call('EXPIRE', KEYS[2 * b - 1], ARGV[a + 2])
end
local base = 5 + nb * 3
for w = 2 * nb + 1, #KEYS do
  local a = base + (w - 2 * nb - 1) * 2
  local v = tonumber(redis.call('INCRBYFLOAT', KEYS[w], ARGV[a]))
  if v < 0 then redis.call('SET', KEYS[w], '0') end
  redis.call('EXPIRE', KEYS[w], ARGV[a + 1])
end
redis.call('SET', beat, '1', 'EX', beat_ttl)
return 1
"""

HEARTBEAT = 15  # seconds a replica's reservations outlive its last sign of life

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
        self._me = secrets.token_hex(8)  # this replica, for the reservations it holds
        self._beat = f"{prefix}h:{self._me}"
        self._beating: asyncio.Task[None] | None = None

    def _alive(self) -> list[str | int]:
        if self._beating is None:  # keep the heartbeat while calls may be in flight
            self._beating = asyncio.get_running_loop().create_task(self._heartbeat())
        return [self._me, self._beat, HEARTBEAT]

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT / 3)
            with contextlib.suppress(Exception):  # Redis away: admissions fail anyway
                await self._redis.set(self._beat, b"1", ex=HEARTBEAT)

    def _window_key(self, key: str, seconds: float, at: float | None = None) -> str:
        return f"{self._p}w:{key}:{int((time.time() if at is None else at) // seconds)}"

    async def admit(
        self, windows: Sequence[Window], reservations: Sequence[Reservation]
    ) -> Refusal | None:
        keys = [self._window_key(w.key, w.seconds) for w in windows]
        for r in reservations:
            keys += [self._p + "b:" + r.key, self._p + "r:" + r.key]
        args: list[float | int | str] = [len(windows), *self._alive()]
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
        adjustments: Sequence[tuple[str, float, float, float]],
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
        keys: list[str] = []
        for key, _, _, _ in adjustments:
            keys += [self._p + "b:" + key, self._p + "r:" + key]
        keys += [
            self._window_key(key, seconds, admitted_at if delta < 0 else now)
            for key, delta, seconds in moved
        ]
        args: list[float | int | str] = [len(adjustments), *self._alive()]
        for _, reserved, used, ttl in adjustments:
            args += [reserved, used, int(ttl)]
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
        held = await self._redis.hvals(self._p + "r:" + key)
        return float(await self._redis.get(self._p + "b:" + key) or 0) + sum(float(v) for v in held)

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None
        with contextlib.suppress(Exception):
            await self._redis.delete(self._beat)
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
