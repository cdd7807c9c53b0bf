"""Calling a route: pick a deployment, retry retryable failures with exponential backoff
and jitter (honouring Retry-After), then follow the route's fallbacks for the error class."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from shipyard.gateway.balancer import Balancer
from shipyard.gateway.errors import ErrorClass, UpstreamFailure
from shipyard.gateway.records import Record
from shipyard.gateway.specs import Deployment, RouteSpec
from shipyard.gateway.state import ProviderPool, Snapshot

Body = dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After goes straight to fallbacks


class Executor:
    def __init__(self, pool: ProviderPool, balancer: Balancer, policy: RetryPolicy) -> None:
        self.pool = pool
        self.balancer = balancer
        self.policy = policy
        self._rng = random.Random()

    def _backoff(self, attempt: int, error: UpstreamFailure) -> float | None:
        wait = min(self.policy.cap, self.policy.base * (2**attempt)) * self._rng.uniform(0.5, 1.0)
        if error.retry_after is not None:
            if error.retry_after > self.policy.max_retry_after:
                return None
            wait = max(wait, error.retry_after)
        return wait

    async def _retry_after_failure(
        self, dep: Deployment, exc: UpstreamFailure, attempt: int, route: RouteSpec, rec: Record
    ) -> bool:
        """Account a failed attempt; wait and return True when another attempt is due."""
        exc.scrub(dep.provider.secrets())
        self.balancer.failed(dep, exc)
        if not exc.retryable or attempt == route.retries:
            return False
        wait = self._backoff(attempt, exc)
        if wait is None:
            return False
        rec.retries += 1
        await asyncio.sleep(wait)
        return True

    async def call(
        self,
        snap: Snapshot,
        workspace_id: str,
        route: RouteSpec,
        op: str,
        body: Body,
        rec: Record,
        depth: int = 0,
    ) -> tuple[Deployment, Body]:
        tried: set[str] = set()
        last: UpstreamFailure | None = None
        for attempt in range(route.retries + 1):
            try:
                dep = self.balancer.pick(route, tried)
            except UpstreamFailure as exc:
                last = exc
                break
            tried.add(dep.id)
            provider = self.pool.get(dep.provider)
            started = time.perf_counter()
            self.balancer.begin(dep)
            try:
                result = await getattr(provider, op)(body, dep)
            except UpstreamFailure as exc:
                last = exc
                if await self._retry_after_failure(dep, exc, attempt, route, rec):
                    continue
                break
            except BaseException:
                self.balancer.released(dep)
                raise
            self.balancer.succeeded(dep, (time.perf_counter() - started) * 1000)
            return dep, result
        assert last is not None
        return await self._fallback(
            self.call, snap, workspace_id, route, op, body, rec, depth, last
        )

    async def _fallback(
        self,
        again: Any,
        snap: Snapshot,
        workspace_id: str,
        route: RouteSpec,
        op: str,
        body: Body,
        rec: Record,
        depth: int,
        last: UpstreamFailure,
    ) -> Any:
        """Try the route's fallbacks for the error class, in order, each once."""
        if depth >= 3:
            raise last
        for name in _fallbacks(route, last.error_class):
            target = snap.route(workspace_id, name)
            if target is None or target.name in rec.fallbacks or target.name == route.name:
                continue
            rec.fallbacks.append(target.name)
            try:
                return await again(snap, workspace_id, target, op, body, rec, depth + 1)
            except UpstreamFailure as exc:
                last = exc
        raise last

    async def stream(
        self,
        snap: Snapshot,
        workspace_id: str,
        route: RouteSpec,
        op: str,
        body: Body,
        rec: Record,
        depth: int = 0,
    ) -> tuple[Deployment, Body, TrackedStream]:
        """Open a stream and read its first chunk, with retries and fallbacks; after the
        first chunk the stream belongs to the client and errors are not retried."""
        tried: set[str] = set()
        last: UpstreamFailure | None = None
        for attempt in range(route.retries + 1):
            try:
                dep = self.balancer.pick(route, tried)
            except UpstreamFailure as exc:
                last = exc
                break
            tried.add(dep.id)
            provider = self.pool.get(dep.provider)
            gen = getattr(provider, op)(body, dep)
            self.balancer.begin(dep)
            started = time.perf_counter()
            try:
                first = await gen.__anext__()
            except StopAsyncIteration:
                exc = UpstreamFailure("upstream stream was empty", error_class=ErrorClass.malformed)
                self.balancer.failed(dep, exc)
                last = exc
                continue
            except UpstreamFailure as exc:
                await gen.aclose()
                last = exc
                if await self._retry_after_failure(dep, exc, attempt, route, rec):
                    continue
                break
            except BaseException:
                self.balancer.released(dep)
                await gen.aclose()
                raise
            return dep, first, TrackedStream(self.balancer, dep, gen, started)
        assert last is not None
        return await self._fallback(
            self.stream,
            snap,
            workspace_id,
            route,
            op,
            body,
            rec,  # type: ignore[no-any-return]
            depth,
            last,
        )


class TrackedStream:
    """The rest of a provider stream, accounted on the balancer exactly once: success at
    its end, failure on an upstream error, release when closed early (even unstarted)."""

    def __init__(
        self, balancer: Balancer, dep: Deployment, gen: AsyncIterator[Body], started: float
    ) -> None:
        self._balancer, self._dep, self._gen, self._started = balancer, dep, gen, started
        self._ended = False

    def __aiter__(self) -> TrackedStream:
        return self

    async def __anext__(self) -> Body:
        if self._ended:
            raise StopAsyncIteration
        try:
            return await self._gen.__anext__()
        except StopAsyncIteration:
            self._ended = True
            self._balancer.succeeded(self._dep, (time.perf_counter() - self._started) * 1000)
            raise
        except UpstreamFailure as exc:
            self._ended = True
            exc.scrub(self._dep.provider.secrets())
            self._balancer.failed(self._dep, exc)
            raise

    async def aclose(self) -> None:
        if not self._ended:  # the client went away
            self._ended = True
            self._balancer.released(self._dep)
        await self._gen.aclose()  # type: ignore[attr-defined]


def _fallbacks(route: RouteSpec, error_class: ErrorClass) -> tuple[str, ...]:
    return route.fallbacks.get(error_class.value, ()) + route.fallbacks.get("any", ())
