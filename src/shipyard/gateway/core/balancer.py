"""Choosing a deployment: weighted random, least busy or lowest latency, skipping
deployments in cooldown. A deployment that fails `failures` times within `window`
seconds cools down for `cooldown` seconds; an active probe may bring it back sooner.

Capacity: a deployment whose provider says how many requests it runs at once (`slots`:
llama-server's batch, local replicas, or `options.slots` on any provider) is full when
that many are in flight; the ones beyond wait in its queue. A request that would wait
there longer than its first-token timeout (queue position x the deployment's mean call
time / slots) is not sent there; when every deployment is so full, the route fails with
`timeout` at once, and the route's fallbacks for `timeout` answer instead."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, RouteSpec

_COUNTS_AGAINST = {
    ErrorClass.rate_limit,
    ErrorClass.server_error,
    ErrorClass.timeout,
    ErrorClass.connect,
    ErrorClass.malformed,
    ErrorClass.auth,
}


@dataclass
class Health:
    in_flight: int = 0
    ewma_ms: float = 0.0
    calls: int = 0
    failures: deque[float] = field(default_factory=deque)
    cooled_until: float = 0.0
    last_error: str = ""

    def cooling(self, now: float) -> bool:
        return self.cooled_until > now


class Balancer:
    def __init__(
        self,
        *,
        failures: int = 3,
        window: float = 60.0,
        cooldown: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.failures, self.window, self.cooldown = failures, window, cooldown
        self.health: dict[str, Health] = {}
        self._rng = rng or random.Random()
        # requests a deployment runs at once (None: unknown, never full); the executor
        # asks the deployment's provider
        self.capacity: Callable[[Deployment], int | None] = lambda dep: None

    def _h(self, dep: Deployment) -> Health:
        h = self.health.get(dep.id)
        if h is None:
            h = self.health[dep.id] = Health()
        return h

    def pick(self, route: RouteSpec, exclude: set[str]) -> Deployment:
        now = time.monotonic()
        live = [d for d in route.deployments if not self._h(d).cooling(now)]
        if not live:
            raise UpstreamError(
                f"every deployment of route '{route.name}' is cooling down",
                error_class=ErrorClass.server_error,
            )
        fresh = [d for d in live if d.id not in exclude] or live
        slots = {d.id: self.capacity(d) for d in fresh}
        fresh = self._with_room(route, fresh, slots)
        if len(fresh) == 1:
            return fresh[0]
        if route.strategy == "least_busy":
            load = {d.id: self._h(d).in_flight / (slots[d.id] or 1) for d in fresh}
            low = min(load.values())
            return self._rng.choice([d for d in fresh if load[d.id] == low])
        if route.strategy == "lowest_latency":
            return min(fresh, key=lambda d: (self._h(d).ewma_ms, self._rng.random()))
        return self._rng.choices(fresh, weights=[max(d.weight, 0.0) or 1e-9 for d in fresh])[0]

    def wait_s(self, dep: Deployment, slots: int | None) -> float:
        """How long a request sent now would wait for one of the deployment's slots."""
        h = self._h(dep)
        if not slots or h.in_flight < slots or h.calls == 0:
            return 0.0
        return (h.in_flight - slots + 1) * h.ewma_ms / slots / 1000

    def _with_room(
        self, route: RouteSpec, deps: list[Deployment], slots: dict[str, int | None]
    ) -> list[Deployment]:
        if not any(slots.values()):
            return deps
        waits = {d.id: self.wait_s(d, slots[d.id]) for d in deps}
        room = [d for d in deps if waits[d.id] <= d.timeouts.first_token]
        if room:
            return room
        least = min(deps, key=lambda d: waits[d.id])
        raise UpstreamError(
            f"every deployment of route '{route.name}' is full: a request would wait about "
            f"{waits[least.id]:.1f} s for a slot, longer than its first-token timeout "
            f"({least.timeouts.first_token:g} s)",
            error_class=ErrorClass.timeout,
        )

    def begin(self, dep: Deployment) -> None:
        self._h(dep).in_flight += 1

    def succeeded(self, dep: Deployment, latency_ms: float) -> None:
        h = self._h(dep)
        h.in_flight = max(0, h.in_flight - 1)
        h.calls += 1
        h.ewma_ms = latency_ms if h.calls == 1 else 0.8 * h.ewma_ms + 0.2 * latency_ms

    def failed(self, dep: Deployment, error: UpstreamError) -> None:
        h = self._h(dep)
        h.in_flight = max(0, h.in_flight - 1)
        h.last_error = error.error_class.value
        if error.error_class not in _COUNTS_AGAINST:
            return
        now = time.monotonic()
        h.failures.append(now)
        while h.failures and h.failures[0] < now - self.window:
            h.failures.popleft()
        if len(h.failures) >= self.failures:
            h.cooled_until = now + self.cooldown
            h.failures.clear()

    def released(self, dep: Deployment) -> None:
        """The call ended without a verdict (client went away)."""
        h = self._h(dep)
        h.in_flight = max(0, h.in_flight - 1)

    def recover(self, dep_id: str) -> None:
        h = self.health.get(dep_id)
        if h is not None:
            h.cooled_until = 0.0
            h.failures.clear()

    def cooling(self) -> list[str]:
        now = time.monotonic()
        return [dep_id for dep_id, h in self.health.items() if h.cooling(now)]

    def status(self, dep_id: str) -> dict[str, object]:
        h = self.health.get(dep_id) or Health()
        now = time.monotonic()
        return {
            "state": "cooldown" if h.cooling(now) else "healthy",
            "cooldown_remaining_s": round(max(0.0, h.cooled_until - now), 1),
            "in_flight": h.in_flight,
            "latency_ewma_ms": round(h.ewma_ms, 2),
            "calls": h.calls,
            "last_error": h.last_error,
        }
