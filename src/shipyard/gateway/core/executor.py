"""Calling a route: pick a deployment, retry retryable failures with exponential backoff
and jitter (honouring Retry-After), then follow the route's fallbacks for the error
class. Returns an `Outcome` (or `StreamOutcome`): which deployment answered, after how
many retries and which fallbacks. On failure the `UpstreamError` carries the same."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.snapshot import Snapshot
from shipyard.gateway.config.specs import Deployment, RouteSpec
from shipyard.gateway.core.balancer import Balancer
from shipyard.gateway.providers.pool import ProviderPool
from shipyard.plugins import Provider

Body = dict[str, Any]
Unary = Callable[[Provider, Body, Deployment], Awaitable[Body]]
Streamed = Callable[[Provider, Body, Deployment], AsyncIterator[Body]]
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After goes straight to fallbacks


@dataclass
class Attempts:
    """What one call tried, across retries and fallbacks."""

    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    deployment: Deployment
    result: Body
    retries: int
    fallbacks: list[str]


@dataclass
class StreamOutcome:
    deployment: Deployment
    first: Body
    rest: TrackedStream
    retries: int
    fallbacks: list[str]


class Executor:
    def __init__(self, pool: ProviderPool, balancer: Balancer, policy: RetryPolicy) -> None:
        self.pool = pool
        self.balancer = balancer
        self.policy = policy
        self._rng = random.Random()
        balancer.capacity = self._slots

    def _slots(self, dep: Deployment) -> int | None:
        return getattr(self.pool.get(dep.provider), "slots", None)

    async def call(
        self, snap: Snapshot, workspace_id: str, route: RouteSpec, op: Unary, body: Body
    ) -> Outcome:
        tries = Attempts()

        async def once(target: RouteSpec) -> tuple[Deployment, Body]:
            return await self._unary(target, op, body, tries)

        dep, result = await self._with_fallbacks(snap, workspace_id, route, once, tries)
        return Outcome(dep, result, tries.retries, tries.fallbacks)

    async def stream(
        self, snap: Snapshot, workspace_id: str, route: RouteSpec, op: Streamed, body: Body
    ) -> StreamOutcome:
        """Open a stream and read its first chunk, with retries and fallbacks; after the
        first chunk the stream belongs to the client and errors are not retried."""
        tries = Attempts()

        async def once(target: RouteSpec) -> tuple[Deployment, tuple[Body, TrackedStream]]:
            return await self._open(target, op, body, tries)

        dep, (first, rest) = await self._with_fallbacks(snap, workspace_id, route, once, tries)
        return StreamOutcome(dep, first, rest, tries.retries, tries.fallbacks)

    async def _with_fallbacks(
        self,
        snap: Snapshot,
        workspace_id: str,
        route: RouteSpec,
        once: Callable[[RouteSpec], Awaitable[tuple[Deployment, T]]],
        tries: Attempts,
    ) -> tuple[Deployment, T]:
        """The route, then its fallbacks for the error class, in order, each once (a
        fallback's own fallbacks are followed to a depth of 3)."""
        try:
            return await self._walk(snap, workspace_id, route, once, tries, 0)
        except UpstreamError as exc:
            exc.retries, exc.fallbacks = tries.retries, tries.fallbacks
            raise

    async def _walk(
        self,
        snap: Snapshot,
        workspace_id: str,
        route: RouteSpec,
        once: Callable[[RouteSpec], Awaitable[tuple[Deployment, T]]],
        tries: Attempts,
        depth: int,
    ) -> tuple[Deployment, T]:
        try:
            return await once(route)
        except UpstreamError as exc:
            last = exc
        if depth >= 3:
            raise last
        for name in _fallbacks(route, last.error_class):
            target = snap.route(workspace_id, name)
            if target is None or target.name in tries.fallbacks or target.name == route.name:
                continue
            tries.fallbacks.append(target.name)
            try:
                return await self._walk(snap, workspace_id, target, once, tries, depth + 1)
            except UpstreamError as exc:
                last = exc
        raise last

    async def _unary(
        self, route: RouteSpec, op: Unary, body: Body, tries: Attempts
    ) -> tuple[Deployment, Body]:
        tried: set[str] = set()
        for attempt in range(route.retries + 1):
            dep = self.balancer.pick(route, tried)
            tried.add(dep.id)
            provider = self.pool.get(dep.provider)
            started = time.perf_counter()
            self.balancer.begin(dep)
            try:
                result = await op(provider, body, dep)
            except UpstreamError as exc:
                if await self._retry_after_failure(dep, exc, attempt, route, tries):
                    continue
                raise
            except BaseException:
                self.balancer.released(dep)
                raise
            self.balancer.succeeded(dep, (time.perf_counter() - started) * 1000)
            return dep, result
        raise AssertionError("unreachable: the last attempt raises")

    async def _open(
        self, route: RouteSpec, op: Streamed, body: Body, tries: Attempts
    ) -> tuple[Deployment, tuple[Body, TrackedStream]]:
        tried: set[str] = set()
        for attempt in range(route.retries + 1):
            dep = self.balancer.pick(route, tried)
            tried.add(dep.id)
            gen = op(self.pool.get(dep.provider), body, dep)
            self.balancer.begin(dep)
            started = time.perf_counter()
            try:
                first = await anext(gen)
            except StopAsyncIteration:
                exc = UpstreamError("upstream stream was empty", error_class=ErrorClass.malformed)
                if await self._retry_after_failure(dep, exc, attempt, route, tries):
                    continue
                raise exc from None
            except UpstreamError as exc:
                await gen.aclose()  # type: ignore[attr-defined]  # provider streams are async generators
                if await self._retry_after_failure(dep, exc, attempt, route, tries):
                    continue
                raise
            except BaseException:
                self.balancer.released(dep)
                await gen.aclose()  # type: ignore[attr-defined]  # provider streams are async generators
                raise
            return dep, (first, TrackedStream(self.balancer, dep, gen, started))
        raise AssertionError("unreachable: the last attempt raises")

    async def _retry_after_failure(
        self, dep: Deployment, exc: UpstreamError, attempt: int, route: RouteSpec, tries: Attempts
    ) -> bool:
        """Account a failed attempt; wait and return True when another attempt is due."""
        exc.scrub(dep.provider.secrets())
        self.balancer.failed(dep, exc)
        if not exc.retryable or attempt == route.retries:
            return False
        wait = self._backoff(attempt, exc)
        if wait is None:
            return False
        tries.retries += 1
        await asyncio.sleep(wait)
        return True

    def _backoff(self, attempt: int, error: UpstreamError) -> float | None:
        wait = min(self.policy.cap, self.policy.base * (2.0**attempt)) * self._rng.uniform(0.5, 1.0)
        if error.retry_after is not None:
            if error.retry_after > self.policy.max_retry_after:
                return None
            wait = max(wait, float(error.retry_after))
        return wait


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
            return await anext(self._gen)
        except StopAsyncIteration:
            self._ended = True
            self._balancer.succeeded(self._dep, (time.perf_counter() - self._started) * 1000)
            raise
        except UpstreamError as exc:
            self._ended = True
            exc.scrub(self._dep.provider.secrets())
            self._balancer.failed(self._dep, exc)
            raise

    async def aclose(self) -> None:
        if not self._ended:  # the client went away
            self._ended = True
            self._balancer.released(self._dep)
        await self._gen.aclose()  # type: ignore[attr-defined]  # provider streams are async generators


def _fallbacks(route: RouteSpec, error_class: ErrorClass) -> tuple[str, ...]:
    return route.fallbacks.get(error_class.value, ()) + route.fallbacks.get("any", ())
