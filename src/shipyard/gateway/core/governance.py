"""Limits and budgets on the gateway path.

    async with governor.admit(snap, route, body, ...) as admission:
        ...                                   # call upstream
        admission.charge(cost, tokens)        # what the call really cost

`admit` checks the route and max tokens, then reserves, in one atomic call to the
counters, one request in every rpm window, the request's worst-case tokens in every
tpm window and its worst-case cost on every budget that applies (or raises, holding
nothing). The worst case covers everything the request can trigger: every prompt of a
completions list, `n` (and `best_of`) choices each up to the output cap, the tokens of
tools and response formats, and the most expensive deployment among the route and its
fallbacks. Leaving the block settles: with a charge, reservations are reconciled to the
real cost and tokens; without one (the call failed or was answered from the cache), they
are given back.

The counters are a cache of the spend ledger (the request records): `ledger_seeds`
turns the ledger's sums into the amounts `Counters.seed` raises them to, at start and
whenever the configuration or the period changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from shipyard.errors import (
    InvalidInput,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
)
from shipyard.gateway.config.prices import deployment_price
from shipyard.gateway.config.snapshot import Snapshot
from shipyard.gateway.config.specs import Deployment, Limits, Price, RouteSpec
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


def period_start(period: str, now: datetime) -> datetime | None:
    """When the current calendar period (UTC) began; None for `total`."""
    now = now.astimezone(UTC)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


@dataclass(frozen=True, slots=True)
class Scope:
    """One scope's limits as admission needs them, built once per configuration."""

    scope: str
    limits: Limits
    rpm: tuple[Window, str] | None  # with what to say when it refuses
    tpm: tuple[Window, str] | None  # its amount is set per request

    @classmethod
    def of(cls, scope: str, lim: Limits) -> Scope:
        who = _who(scope)
        rpm = tpm = None
        if lim.rpm is not None:
            why = f"rate limit of {lim.rpm} requests per minute reached for {who}"
            rpm = (Window(f"rpm:{scope}", lim.rpm, 60.0), why)
        if lim.tpm is not None:
            why = f"token limit of {lim.tpm} tokens per minute reached for {who}"
            tpm = (Window(f"tpm:{scope}", lim.tpm, 60.0), why)
        return cls(scope, lim, rpm, tpm)


@dataclass
class Admission:
    """A request let in. As an async context manager it settles exactly once on exit."""

    governor: Governor
    scopes: list[Scope]
    reserved: list[tuple[str, float, float]] = field(default_factory=list)  # key, amount, ttl
    tokens_reserved: list[tuple[str, float, float]] = field(default_factory=list)  # key, n, s
    admitted_at: float = 0.0
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
        self._worst: dict[tuple[str, str], tuple[tuple[Price, ...], str | None]] = {}

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

    def _prices(
        self, snap: Snapshot, workspace_id: str, route: RouteSpec
    ) -> tuple[tuple[Price, ...], str | None]:
        """The prices of the deployments the call can reach (the route's and, to the
        executor's depth, its fallbacks'), and the first model among them whose price is
        unknown."""
        memo = (workspace_id, route.id)
        if memo not in self._worst:
            prices: set[Price] = set()
            unknown = None
            for dep in _reachable(snap, workspace_id, route):
                price = deployment_price(snap.prices, dep)
                if price is None:
                    unknown = unknown or dep.model
                else:
                    prices.add(price)
            self._worst[memo] = (tuple(prices), unknown)
        return self._worst[memo]

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
        reserves (or raises, holding nothing); leaving settles."""
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
        """Allowed routes and max tokens here; then the reservations in rpm and tpm
        windows and on every budget, in one atomic call to the counters."""
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
        metered = [p for p in plan if p.tpm is not None]
        if (budgets or metered) and route.kind == "chat":
            adm.max_output = requested or cap or DEFAULT_MAX_OUTPUT
        elif cap is not None and requested is None:
            adm.max_output = cap
        prompt = output = 0
        if budgets or metered:
            prompt, output = worst_case_tokens(body, adm.max_output or 0)
        tpm = [replace(p.tpm[0], amount=float(prompt + output)) for p in metered if p.tpm]
        windows = [p.rpm for p in plan if p.rpm is not None]
        windows += [(w, p.tpm[1]) for w, p in zip(tpm, metered, strict=True) if p.tpm]
        reservations: list[Reservation] = []
        if budgets:
            prices, unknown = self._prices(snap, workspace_id, route)
            if unknown is not None:
                raise PermissionDenied(
                    f"the price of model '{unknown}' is unknown, so the budget of "
                    f"{_who(budgets[0].scope)} cannot be kept; a platform administrator "
                    "must add it to the price table (at 0 to mark it free)",
                    param="model",
                    code="model_price_unknown",
                )
            max_cost = max((pr.cost(prompt, output) for pr in prices), default=0.0)
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
        admitted_at = time.time()
        refusal = await self.counters.admit([w for w, _ in windows], reservations)
        # (a refusal changed nothing: there is nothing to give back)
        if refusal is None:
            adm.admitted_at = admitted_at
            adm.reserved = [(r.key, r.amount, r.ttl) for r in reservations]
            adm.tokens_reserved = [(w.key, w.amount, w.seconds) for w in tpm]
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
        adjustments = [(key, amount, cost, ttl) for key, amount, ttl in reserved]
        used = float(adm.tokens) if adm.cost is not None else 0.0
        windows = [
            (key, used - amount, s) for key, amount, s in adm.tokens_reserved if used != amount
        ]
        adm.tokens_reserved = []
        if adjustments or windows:
            await self.counters.settle(adjustments, windows, adm.admitted_at)

    async def spent(self, scope: str, period: str) -> float:
        """What the counters hold for `scope`'s budget now: the ledger plus reservations
        in flight."""
        return await self.counters.spent(self.budget_key(scope, period))

    def ledger_seeds(
        self, snap: Snapshot, spend: Iterable[tuple[str, str, str, float]], period: str
    ) -> list[tuple[str, float, float]]:
        """The budget counters of `period` as the ledger has them: `spend` is the
        ledger's (workspace, key, end user, USD) sums over the current period."""
        totals: dict[str, float] = {}
        for workspace_id, key_id, end_user, usd in spend:
            for scope in scopes_for(workspace_id, key_id, end_user):
                totals[scope] = totals.get(scope, 0.0) + usd
        ttl = _PERIOD_TTL.get(period, _PERIOD_TTL["month"])
        return [
            (self.budget_key(scope, period), totals.get(scope, 0.0), ttl)
            for scope, lim in snap.limits.items()
            if lim.budget_usd is not None and lim.budget_period == period
        ]


def worst_case_tokens(body: dict[str, Any], max_output: int) -> tuple[int, int]:
    """Prompt and output tokens a request can use at most: the prompt estimate covers the
    whole body (messages, every prompt of a list, tools, response format); the output is
    the cap times the choices (`n`, `best_of`) times the prompts of a completions list."""
    prompt = estimate_tokens(body)
    choices = max(_count(body.get("n")), _count(body.get("best_of")))
    prompts = body.get("prompt")
    if isinstance(prompts, list) and prompts and not isinstance(prompts[0], int):
        choices *= len(prompts)  # a list of strings (or of token lists): one each
    return prompt, max_output * choices


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def _reachable(snap: Snapshot, workspace_id: str, route: RouteSpec) -> list[Deployment]:
    """The deployments of the route and of the fallbacks it can reach (depth 3, as the
    executor follows them)."""
    seen, found, frontier = {route.name}, list(route.deployments), [route]
    for _ in range(3):
        nxt = []
        for r in frontier:
            for names in r.fallbacks.values():
                for name in names:
                    target = snap.route(workspace_id, name)
                    if target is not None and target.name not in seen:
                        seen.add(target.name)
                        found += target.deployments
                        nxt.append(target)
        frontier = nxt
    return found


def _who(scope: str) -> str:
    kind, _, rest = scope.partition(":")
    if kind == "user":
        return f"end user '{rest.partition(':')[2]}'"
    return f"this {kind}"
