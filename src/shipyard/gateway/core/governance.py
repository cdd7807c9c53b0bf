"""Limits and budgets on the gateway path.

    async with governor.admit(snap, route, body, ...) as admission:
        ...                                   # call upstream
        admission.charge(cost, tokens)        # what the call really cost

`admit` checks the route, max tokens, rpm and tpm, and reserves the request's maximum
cost on every budget that applies (or raises). Leaving the block settles: with a
charge, reservations are reconciled to the real cost and tokens counted; without one
(the call failed or was answered from the cache), they are given back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from shipyard.errors import (
    InvalidInput,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
)
from shipyard.gateway.config.prices import price_for
from shipyard.gateway.config.snapshot import Snapshot
from shipyard.gateway.config.specs import Limits, Price, RouteSpec
from shipyard.gateway.core.cost import estimate_tokens
from shipyard.plugins import Counters, Reservation, Window

DEFAULT_MAX_OUTPUT = 4096
_PERIOD_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": 10 * 365 * 86400}


def scopes_for(workspace_id: str, key_id: str, end_user: str) -> list[str]:
    out = [f"key:{key_id}", f"workspace:{workspace_id}"]
    if end_user:
        out.append(f"user:{workspace_id}:{end_user}")
    return out


def period_id(period: str, now: datetime) -> str:
    """The calendar period (UTC) a budget counts in."""
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    return "total"


@dataclass(frozen=True, slots=True)
class Scope:
    """One scope's limits as admission needs them, built once per configuration."""

    scope: str
    limits: Limits
    tpm_key: str
    windows: tuple[tuple[Window, str], ...]  # each with what to say when it refuses

    @classmethod
    def of(cls, scope: str, lim: Limits) -> Scope:
        windows = []
        who = _who(scope)
        if lim.rpm is not None:
            why = f"rate limit of {lim.rpm} requests per minute reached for {who}"
            windows.append((Window(f"rpm:{scope}", lim.rpm, 60.0, count=True), why))
        if lim.tpm is not None:
            why = f"token limit of {lim.tpm} tokens per minute reached for {who}"
            windows.append((Window(f"tpm:{scope}", lim.tpm, 60.0, count=False), why))
        return cls(scope, lim, f"tpm:{scope}", tuple(windows))


@dataclass
class Admission:
    """A request let in. As an async context manager it settles exactly once on exit."""

    governor: Governor
    scopes: list[Scope]
    reserved: list[tuple[str, float, float]] = field(default_factory=list)  # key, amount, ttl
    max_output: int | None = None
    cost: float | None = None
    tokens: int = 0
    settled: bool = False
    handed_over: bool = False
    request: tuple[Any, ...] | None = None  # what `__aenter__` checks

    def charge(self, cost: float, tokens: int) -> None:
        self.cost, self.tokens = cost, tokens

    def hand_over(self) -> Admission:
        """Leaving the block no longer settles: the new owner calls `governor.settle`."""
        self.handed_over = True
        return self

    async def __aenter__(self) -> Admission:
        if self.request is not None:
            request, self.request = self.request, None
            await self.governor.check(self, *request)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.handed_over or self.settled:
            return
        if self.governor.counters.local:  # never suspends, so cannot be cancelled midway
            await self.governor.settle(self)
        else:  # shielded: a cancelled request must still give its reservation back
            await asyncio.shield(self.governor.settle(self))


class Governor:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self._periods: dict[tuple[str, int], str] = {}
        # per configuration snapshot: which limits apply to a caller, a route's worst price
        self._memo_of: Snapshot | None = None
        self._scopes: dict[tuple[str, str, str], list[Scope]] = {}
        self._worst: dict[str, Price | None] = {}

    def _memo(self, snap: Snapshot) -> None:
        if self._memo_of is not snap or len(self._scopes) > 100_000:
            self._memo_of, self._scopes, self._worst = snap, {}, {}

    def _scopes_of(
        self, snap: Snapshot, workspace_id: str, key_id: str, end_user: str
    ) -> list[Scope]:
        found = self._scopes.get((workspace_id, key_id, end_user))
        if found is None:
            found = [
                Scope.of(s, snap.limits[s])
                for s in scopes_for(workspace_id, key_id, end_user)
                if s in snap.limits
            ]
            self._scopes[(workspace_id, key_id, end_user)] = found
        return found

    def _worst_price(self, snap: Snapshot, route: RouteSpec) -> Price | None:
        """The most expensive deployment's price: what a reservation must cover."""
        if route.id not in self._worst:
            self._worst[route.id] = max(
                (price_for(snap.prices, d.model) for d in route.deployments),
                key=lambda p: p.input + p.output,
                default=None,
            )
        return self._worst[route.id]

    def budget_key(self, scope: str, period: str) -> str:
        """The counter of `scope`'s budget in the current period (memoised per minute:
        this is on the hot path)."""
        minute = int(time.time() // 60)
        found = self._periods.get((period, minute))
        if found is None:
            if len(self._periods) > 64:
                self._periods.clear()
            found = self._periods[(period, minute)] = period_id(period, datetime.now(UTC))
        return f"budget:{scope}:{found}"

    def admit(
        self,
        snap: Snapshot,
        route: RouteSpec,
        body: dict[str, Any],
        workspace_id: str,
        key_id: str,
        end_user: str,
    ) -> Admission:
        """`async with governor.admit(...) as admission:` entering checks the limits and
        reserves the budget (or raises, holding nothing); leaving settles."""
        adm = Admission(self, scopes=[])
        adm.request = (snap, route, body, workspace_id, key_id, end_user)
        return adm

    async def check(
        self,
        adm: Admission,
        snap: Snapshot,
        route: RouteSpec,
        body: dict[str, Any],
        workspace_id: str,
        key_id: str,
        end_user: str,
    ) -> None:
        """Allowed routes and max tokens here; then rpm, tpm and the reservation of the
        request's maximum cost on every budget, in one atomic call to the counters."""
        self._memo(snap)
        plan = self._scopes_of(snap, workspace_id, key_id, end_user)
        if not plan:
            return
        adm.scopes = plan
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        cap = None
        for p in plan:
            scope, lim = p.scope, p.limits
            if lim.allowed_routes is not None and route.name not in lim.allowed_routes:
                raise PermissionDenied(
                    f"{_who(scope)} may not use model '{route.name}'",
                    param="model",
                    code="model_not_allowed",
                )
            if lim.max_tokens is not None:
                if requested is not None and requested > lim.max_tokens:
                    raise InvalidInput(
                        f"max_tokens {requested} is over the limit of {lim.max_tokens} for "
                        f"{_who(scope)}",
                        param="max_tokens",
                        code="max_tokens_exceeded",
                    )
                cap = lim.max_tokens if cap is None else min(cap, lim.max_tokens)
        budgets = [p for p in plan if p.limits.budget_usd is not None]
        if budgets and route.kind == "chat":
            adm.max_output = requested or cap or DEFAULT_MAX_OUTPUT
        elif cap is not None and requested is None:
            adm.max_output = cap
        windows = [w for p in plan for w in p.windows]
        reservations: list[Reservation] = []
        if budgets:
            worst = self._worst_price(snap, route)
            prompt = estimate_tokens(
                body.get("messages") or body.get("prompt") or body.get("input") or ""
            )
            n = body.get("n")
            choices = n if isinstance(n, int) else 1
            max_cost = worst.cost(prompt, (adm.max_output or 0) * choices) if worst else 0.0
            for p in budgets:
                period = p.limits.budget_period
                reservations.append(
                    Reservation(
                        self.budget_key(p.scope, period),
                        max_cost,
                        p.limits.budget_usd or 0.0,
                        _PERIOD_TTL.get(period, _PERIOD_TTL["month"]),
                    )
                )
        if not windows and not reservations:
            return
        refusal = await self.counters.admit([w for w, _ in windows], reservations)
        # (a refusal changed nothing: there is nothing to give back)
        if refusal is None:
            adm.reserved = [(r.key, r.amount, r.ttl) for r in reservations]
            return
        if refusal.window is not None:
            raise RateLimited(windows[refusal.window][1], retry_after=refusal.retry_after)
        lim = budgets[refusal.budget or 0].limits
        raise QuotaExceeded(
            f"budget of ${lim.budget_usd:.4f} per {lim.budget_period} is spent for "
            f"{_who(budgets[refusal.budget or 0].scope)}"
        )

    async def settle(self, adm: Admission) -> None:
        """Reconcile reservations to the charge (none: give them back); once only."""
        if adm.settled:
            return
        adm.settled = True
        cost = adm.cost or 0.0
        reserved, adm.reserved = adm.reserved, []
        adjustments = [(key, cost - amount, ttl) for key, amount, ttl in reserved if cost != amount]
        additions = []
        if adm.cost is not None and adm.tokens:
            additions = [(p.tpm_key, float(adm.tokens), 60.0) for p in adm.scopes if p.limits.tpm]
        if adjustments or additions:
            await self.counters.settle(adjustments, additions)

    async def spent(self, scope: str, period: str) -> float:
        return await self.counters.spent(self.budget_key(scope, period))


def _who(scope: str) -> str:
    kind, _, rest = scope.partition(":")
    if kind == "user":
        return f"end user '{rest.partition(':')[2]}'"
    return f"this {kind}"
