"""Key revocations reach every replica and worker at once: a revoked key's cache entry
is dropped everywhere through Redis pub/sub, instead of after `key_cache_ttl_seconds`.
Without Redis there is one process, and `KeyAuthenticator.revoked` suffices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from shipyard.identity.authn import KeyAuthenticator

log = logging.getLogger("shipyard.identity")
CHANNEL = "shipyard:keys:revoked"


class KeyRevocations:
    def __init__(self, keys: KeyAuthenticator, redis_url: str | None) -> None:
        self.keys = keys
        self.url = redis_url
        self._publisher: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        if redis_url is not None:
            keys.on_revoke.append(self.publish)

    def publish(self, kid: str) -> None:
        """Called from the revoking request's thread."""
        import redis

        try:
            if self._publisher is None:
                self._publisher = redis.Redis.from_url(
                    self.url or "", socket_timeout=2, socket_connect_timeout=2
                )
            self._publisher.publish(CHANNEL, kid.encode())
        except redis.RedisError:  # the local cache is already clear; others fall back to TTL
            log.warning("could not broadcast a key revocation", exc_info=True)

    async def start(self) -> None:
        if self.url is None:
            return
        self._task = asyncio.create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        while True:
            # pings a quiet connection, so a half-open one is noticed and replaced
            client = aioredis.Redis.from_url(self.url or "", health_check_interval=30)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.keys.forget(bytes(message["data"]).decode())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect; meanwhile the TTL bounds staleness
                log.warning("key revocation channel lost; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._publisher is not None:
            self._publisher.close()
