"""Canaries: a registered model version tried on a share of a route's live traffic,
judged by an online metric, then rolled back or promoted by the platform itself.

    start     the `canary` alias is pointed at the new version and the route's target
              becomes a weighted registry split: `<model>@<stable alias>` (100 - p) and
              `<model>@canary` (p); the route's target before is kept
    judge     (every `serving_canary_tick_seconds`, or on demand) the route's feedback
              of the metric's name since the start, each score counted for the arm
              whose deployment answered (the deployments' models in the gateway's
              snapshot tell the arms apart); once each arm has `min_samples`:
              - the canary's mean is below the stable arm's by more than `margin`, and
                the difference is significant (the 95% bootstrap interval of
                canary - stable lies below 0): rolled back, the route's target restored
              - else, `promote_after_s` after the start: promoted, the route served by
                the canary version alone
    audit     each start and decision is an audit entry with the figures behind it

The online scores are feedback rows: written by online evaluation rules (an evaluation
capability judge scoring sampled traces), by reviewers or by end users; the canary
reads them like any metric. Two replicas judging at once decide once (a conditional
update of the row)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field
from sqlalchemy import select, update

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.evaluation import stats
from shipyard.identity.actor import Actor
from shipyard.inputs import Strict
from shipyard.serving.tables import CanaryRow
from shipyard.store import new_id, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shipyard.platform import Platform

log = logging.getLogger("shipyard.serving")
CANARY_ALIAS = "canary"
MAX_SCORES = 100_000  # per arm and judgement


class CanaryIn(Strict):
    route: str = Field(min_length=1, max_length=128, description="the gateway route to split")
    model: str = Field(min_length=1, max_length=128, description="the registry model")
    version: int = Field(ge=1, le=2**31 - 1, description="the version to try")
    stable_alias: str = Field(default="production", min_length=1, max_length=64)
    percent: float = Field(default=10, gt=0, lt=100, description="the canary's share")
    metric: str = Field(min_length=1, max_length=64, description="a feedback (score) name")
    margin: float = Field(default=0.05, ge=0, le=1e9)
    min_samples: int = Field(default=30, ge=2, le=1_000_000)
    promote_after_seconds: float = Field(default=3600, ge=0, le=90 * 86400)


@dataclass(frozen=True)
class Verdict:
    action: str  # "wait" | "rollback" | "promote"
    reason: str
    figures: dict[str, Any]


def judge(
    stable: list[float], canary: list[float], *, margin: float, min_samples: int,
    elapsed_s: float, promote_after_s: float,
) -> Verdict:  # fmt: skip
    """What the scores of the two arms say now."""
    figures: dict[str, Any] = {
        "stable": {"n": len(stable), "mean": sum(stable) / len(stable) if stable else None},
        "canary": {"n": len(canary), "mean": sum(canary) / len(canary) if canary else None},
    }
    if len(stable) < min_samples or len(canary) < min_samples:
        return Verdict("wait", f"each arm needs {min_samples} scores", figures)
    diff = stats.unpaired(stable, canary)
    assert diff is not None
    figures["difference"] = {"mean": diff.mean, "ci_low": diff.low, "ci_high": diff.high}
    if diff.mean < -margin and diff.high < 0:
        return Verdict(
            "rollback",
            f"the canary scores {-diff.mean:.3f} below the stable arm (95% interval "
            f"{diff.low:.3f} to {diff.high:.3f}), more than the margin {margin}",
            figures,
        )
    if elapsed_s >= promote_after_s:
        return Verdict("promote", f"no significant drop after {elapsed_s:.0f} s", figures)
    return Verdict("wait", "no significant drop yet", figures)


class Canaries:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.tick = platform.settings.serving_canary_tick_seconds
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._judging(), name="canaries")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop

    async def _judging(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                ids = await asyncio.to_thread(self._running)
                for canary_id in ids:
                    await self.judge_now(canary_id)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("judging canaries failed")

    def _running(self) -> list[str]:
        with self.platform.db.transaction() as s:
            return list(s.scalars(select(CanaryRow.id).where(CanaryRow.status == "running")))

    # start --------------------------------------------------------------------------------

    def create(self, s: Session, actor: Actor, body: CanaryIn) -> CanaryRow:
        from shipyard.gateway.config.snapshot import bump_version
        from shipyard.gateway.tables import RouteRow
        from shipyard.registry import assets

        ws = actor.workspace_id
        route = s.scalars(
            select(RouteRow).where(RouteRow.workspace_id == ws, RouteRow.name == body.route)
        ).first()
        if route is None:
            raise InvalidInput(f"route: no route named '{body.route}'", param="route")
        if s.scalars(
            select(CanaryRow.id).where(
                CanaryRow.workspace_id == ws, CanaryRow.route == body.route,
                CanaryRow.status == "running",
            )
        ).first():  # fmt: skip
            raise Conflict(f"route: '{body.route}' already has a running canary", param="route")
        asset = assets.get_asset(s, workspace_id=ws, kind="model", name=body.model)
        stable = assets.aliases(s, asset).get(body.stable_alias)
        if stable is None:
            raise InvalidInput(
                f"stable_alias: model '{body.model}' has no alias '{body.stable_alias}'",
                param="stable_alias",
            )
        assets.get_version(s, asset, body.version)  # a 404 naming it
        from shipyard.registry import promotion

        if body.stable_alias == CANARY_ALIAS:
            raise InvalidInput(
                f"stable_alias: '{CANARY_ALIAS}' is the alias the canary itself moves",
                param="stable_alias",
            )
        if promotion.is_environment(s, workspace_id=ws, alias=CANARY_ALIAS):
            raise Conflict(
                f"'{CANARY_ALIAS}' is an environment of this workspace: it moves only through "
                "a promotion, so a canary cannot use it"
            )
        if body.version == stable:
            raise InvalidInput(
                f"version: v{body.version} is what '{body.stable_alias}' serves already",
                param="version",
            )
        assets.move_alias(
            s, asset, alias=CANARY_ALIAS, number=body.version, reason="canary",
            actor=actor.ref, actor_kind=actor.kind,
        )  # fmt: skip
        row = CanaryRow(
            id=new_id("cnr"), workspace_id=ws, route=body.route, model=body.model,
            stable_alias=body.stable_alias, stable_version=stable, canary_version=body.version,
            percent=body.percent, metric=body.metric, margin=body.margin,
            min_samples=body.min_samples, promote_after_s=body.promote_after_seconds,
            status="running", previous_target=route.target, created_by=actor.ref,
        )  # fmt: skip
        s.add(row)
        route.target = {
            "kind": "registry",
            "refs": [
                {"ref": f"{body.model}@{body.stable_alias}", "weight": 100 - body.percent},
                {"ref": f"{body.model}@{CANARY_ALIAS}", "weight": body.percent},
            ],
        }
        s.flush()
        bump_version(s)
        return row

    # judging ------------------------------------------------------------------------------

    def arms(self, row: CanaryRow) -> dict[str, str]:
        """Deployment model -> arm, from the gateway's snapshot of the route (its
        deployments' `source` labels name the alias they resolved)."""
        gateway = self.platform.services["gateway"]
        route = gateway.snapshot.route(row.workspace_id, row.route)
        seen: dict[str, set[str]] = {}
        for dep in route.deployments if route is not None else ():
            # a label is "<ref>=v<n>": the reference it resolved, exactly
            ref = dep.source.partition("=")[0]
            if ref == f"{row.model}@{CANARY_ALIAS}":
                seen.setdefault(dep.model, set()).add("canary")
            elif ref == f"{row.model}@{row.stable_alias}":
                seen.setdefault(dep.model, set()).add("stable")
        # a model both arms serve cannot say which answered: its scores count for neither
        return {m: next(iter(arms)) for m, arms in seen.items() if len(arms) == 1}

    def scores(self, s: Session, row: CanaryRow, arms: dict[str, str]) -> dict[str, list[float]]:
        from shipyard.feedback.tables import FeedbackRow

        found: dict[str, list[float]] = {"stable": [], "canary": []}
        q = (
            select(FeedbackRow.model, FeedbackRow.score)
            .where(
                FeedbackRow.workspace_id == row.workspace_id,
                FeedbackRow.route == row.route,
                FeedbackRow.name == row.metric,
                FeedbackRow.score.is_not(None),
                FeedbackRow.at_s >= int(row.started_at.timestamp()),
            )
            .limit(2 * MAX_SCORES)
        )
        for model, score in s.execute(q):
            arm = arms.get(model)
            if arm is not None and score is not None and len(found[arm]) < MAX_SCORES:
                found[arm].append(float(score))
        return found

    async def judge_now(self, canary_id: str) -> CanaryRow:
        decided = await asyncio.to_thread(self._judge, canary_id)
        if decided:
            await self.platform.services["gateway"].reload()
        return await asyncio.to_thread(self.get_row, canary_id)

    def get_row(self, canary_id: str) -> CanaryRow:
        with self.platform.db.transaction() as s:
            row = s.get(CanaryRow, canary_id)
            assert row is not None
            s.expunge(row)
            return row

    def _judge(self, canary_id: str) -> bool:
        with self.platform.db.transaction() as s:
            row = s.get(CanaryRow, canary_id)
            if row is None or row.status != "running":
                return False
            found = self.scores(s, row, self.arms(row))
            elapsed = (utcnow() - row.started_at).total_seconds()
            verdict = judge(
                found["stable"], found["canary"], margin=row.margin,
                min_samples=row.min_samples, elapsed_s=elapsed,
                promote_after_s=row.promote_after_s,
            )  # fmt: skip
            decision = {"action": verdict.action, "reason": verdict.reason, **verdict.figures,
                        "at": utcnow().isoformat()}  # fmt: skip
            if verdict.action == "wait":
                row.decision = decision
                return False
            return self._end(s, row, "rolled_back" if verdict.action == "rollback" else "promoted",
                             decision, actor="system", actor_kind="system")  # fmt: skip

    def _end(
        self, s: Session, row: CanaryRow, status: str, decision: dict[str, Any], *,
        actor: str, actor_kind: str,
    ) -> bool:  # fmt: skip
        """The canary ended (once: a conditional update), the route's target set."""
        from shipyard.audit.service import Entry, record
        from shipyard.gateway.config.snapshot import bump_version
        from shipyard.gateway.tables import RouteRow

        took = s.execute(
            update(CanaryRow)
            .where(CanaryRow.id == row.id, CanaryRow.status == "running")
            .values(status=status, decision=decision, ended_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not took.rowcount:  # type: ignore[attr-defined]  # a CursorResult
            return False
        route = s.scalars(
            select(RouteRow).where(
                RouteRow.workspace_id == row.workspace_id, RouteRow.name == row.route
            )
        ).first()
        if route is not None:
            if status == "promoted":
                route.target = {"kind": "registry",
                                "refs": [{"ref": f"{row.model}@{row.canary_version}",
                                          "weight": 1.0}]}  # fmt: skip
            else:
                route.target = row.previous_target
            bump_version(s)
        action = {"rolled_back": "serving.canary.rollback", "promoted": "serving.canary.promote",
                  "stopped": "serving.canary.stop"}[status]  # fmt: skip
        record(
            s,
            Entry(
                actor=actor, actor_kind=actor_kind, action=action, outcome="success",
                status=200, workspace_id=row.workspace_id, target=f"canary:{row.id}",
                detail=str(decision.get("reason", ""))[:500],
            ),
        )  # fmt: skip
        return True

    def stop_now(self, s: Session, actor: Actor, canary_id: str) -> CanaryRow:
        row = self.get(s, actor.workspace_id, canary_id)
        if row.status != "running":
            raise Conflict(f"canary '{row.id}' is {row.status}")
        decision = {"action": "stop", "reason": f"stopped by {actor.label}",
                    "at": utcnow().isoformat()}  # fmt: skip
        self._end(s, row, "stopped", decision, actor=actor.ref, actor_kind=actor.kind)
        s.refresh(row)
        return row

    @staticmethod
    def get(s: Session, workspace_id: str, canary_id: str) -> CanaryRow:
        row = s.get(CanaryRow, canary_id[:64])
        if row is None or row.workspace_id != workspace_id:
            raise NotFound(f"no canary with id '{canary_id[:64]}'")
        return row
