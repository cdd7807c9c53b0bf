"""Limits and budgets on the gateway path: admit a request (rate, tokens, route,
max tokens, budget reservation) and settle it afterwards with the real cost."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipyard.gateway.cost import estimate_tokens, price_for
from shipyard.gateway.errors import (
    InsufficientQuota,
    InvalidRequest,
    NotPermitted,
    RateLimitExceeded,
)
from shipyard.gateway.limits import LimitBackend
from shipyard.gateway.specs import Limits, RouteSpec
from shipyard.gateway.state import Snapshot

DEFAULT_MAX_OUTPUT = 4096
_PERIOD_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": 10 * 365 * 86400}


def scopes_for(workspace_id: str, key_id: str, end_user: str) -> list[str]:
    out = [f"key:{key_id}", f"workspace:{workspace_id}"]
    if end_user:
        out.append(f"user:{workspace_id}:{end_user}")
    return out


_period_cache: dict[tuple[str, int], str] = {}


def period_id(period: str, now: datetime | None = None) -> str:
    if now is None:  # the hot path: memoised per minute
        minute = int(time.time() // 60)
        cached = _period_cache.get((period, minute))
        if cached is None:
            if len(_period_cache) > 64:
                _period_cache.clear()
            cached = _period_cache[(period, minute)] = period_id(period, datetime.now(UTC))
        return cached
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    return "total"


def budget_key(scope: str, period: str) -> str:
    return f"budget:{scope}:{period_id(period)}"


@dataclass
class Admission:
    scopes: list[tuple[str, Limits]]
    reserved: list[tuple[str, float, float]] = field(default_factory=list)  # key, amount, ttl
    max_output: int | None = None
    settled: bool = False


class Governor:
    def __init__(self, backend: LimitBackend) -> None:
        self.backend = backend

    async def admit(
        self,
        snap: Snapshot,
        route: RouteSpec,
        body: dict[str, Any],
        workspace_id: str,
        key_id: str,
        end_user: str,
    ) -> Admission:
        scopes = [
            (s, snap.limits[s])
            for s in scopes_for(workspace_id, key_id, end_user)
            if s in snap.limits
        ]
        adm = Admission(scopes=scopes)
        if not scopes:
            return adm
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        cap = None
        for scope, lim in scopes:
            if lim.allowed_routes is not None and route.name not in lim.allowed_routes:
                raise NotPermitted(
                    f"{_who(scope)} may not use model '{route.name}'",
                    param="model",
                    code="model_not_allowed",
                )
            if lim.max_tokens is not None:
                if requested is not None and requested > lim.max_tokens:
                    raise InvalidRequest(
                        f"max_tokens {requested} is over the limit of {lim.max_tokens} for "
                        f"{_who(scope)}",
                        param="max_tokens",
                        code="max_tokens_exceeded",
                    )
                cap = lim.max_tokens if cap is None else min(cap, lim.max_tokens)
        for scope, lim in scopes:
            if lim.rpm is not None:
                wait = await self.backend.hit(f"rpm:{scope}", lim.rpm, 60.0)
                if wait > 0:
                    raise RateLimitExceeded(
                        f"rate limit of {lim.rpm} requests per minute reached for {_who(scope)}",
                        retry_after=wait,
                    )
            if lim.tpm is not None:
                used = await self.backend.window_total(f"tpm:{scope}", 60.0)
                if used >= lim.tpm:
                    raise RateLimitExceeded(
                        f"token limit of {lim.tpm} tokens per minute reached for {_who(scope)}",
                        retry_after=60.0 - (datetime.now(UTC).timestamp() % 60.0),
                    )
        budgets = [(s, lim) for s, lim in scopes if lim.budget_usd is not None]
        if budgets and route.kind == "chat":
            adm.max_output = requested or cap or DEFAULT_MAX_OUTPUT
        elif cap is not None and requested is None:
            adm.max_output = cap
        if budgets:
            worst = max(
                (price_for(snap.prices, d.model) for d in route.deployments),
                key=lambda p: p.input + p.output,
                default=None,
            )
            prompt = estimate_tokens(
                body.get("messages") or body.get("prompt") or body.get("input") or ""
            )
            choices = body.get("n") if isinstance(body.get("n"), int) else 1
            max_cost = worst.cost(prompt, (adm.max_output or 0) * choices) if worst else 0.0
            try:
                for scope, lim in budgets:
                    key = budget_key(scope, lim.budget_period)
                    ttl = _PERIOD_TTL.get(lim.budget_period, _PERIOD_TTL["month"])
                    if not await self.backend.reserve(key, max_cost, lim.budget_usd or 0.0, ttl):
                        raise InsufficientQuota(
                            f"budget of ${lim.budget_usd:.4f} per {lim.budget_period} is spent "
                            f"for {_who(scope)}"
                        )
                    adm.reserved.append((key, max_cost, ttl))
            except BaseException:
                await self.release(adm)  # whatever was reserved before the refusal or error
                raise
        return adm

    async def settle(self, adm: Admission, cost: float, tokens: int) -> None:
        if adm.settled:
            return
        adm.settled = True
        reserved, adm.reserved = adm.reserved, []
        for key, amount, ttl in reserved:
            if cost != amount:
                await self.backend.adjust(key, cost - amount, ttl)
        for scope, lim in adm.scopes:
            if lim.tpm is not None and tokens:
                await self.backend.add(f"tpm:{scope}", tokens, 60.0)

    async def release(self, adm: Admission) -> None:
        """Give back reservations of a call that cost nothing; no-op once settled."""
        if adm.settled:
            return
        reserved, adm.reserved = adm.reserved, []
        for key, amount, ttl in reserved:
            await self.backend.adjust(key, -amount, ttl)

    async def spent(self, scope: str, period: str) -> float:
        return await self.backend.spent(budget_key(scope, period))


def _who(scope: str) -> str:
    kind, _, rest = scope.partition(":")
    if kind == "user":
        return f"end user '{rest.partition(':')[2]}'"
    return f"this {kind}"
