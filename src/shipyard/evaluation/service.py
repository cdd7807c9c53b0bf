"""The evaluation capability's service: the local worker that executes evaluation runs
(bounded concurrency, resumed after a restart, cancellable; see `runner`), the online
evaluator's schedule (`online`), and the metric alert rules take from online scores."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from shipyard.evaluation.online import OnlineEvaluator
from shipyard.evaluation.runner import Progress, Runner
from shipyard.evaluation.runs import runs_of_subject
from shipyard.feedback import store as feedback_store

if TYPE_CHECKING:
    from shipyard.platform import Platform

log = logging.getLogger("shipyard.evaluation")


class Evaluation:
    metrics: tuple[str, ...] = ("online_score_mean",)

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.runner = Runner(
            platform,
            slots=settings.eval_concurrent_runs,
            lease_s=settings.eval_lease_seconds,
            chunk=8,
        )
        self.online = OnlineEvaluator(platform)
        self.tick_s = settings.eval_online_tick_seconds
        self._ticking: asyncio.Task[None] | None = None
        platform.metric_sources.append(self)
        platform.lineage_sources.append(runs_of_subject)

    async def start(self) -> None:
        await self.runner.start()
        self._ticking = asyncio.create_task(self._online(), name="eval-online")

    async def stop(self) -> None:
        if self._ticking is not None:
            self._ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ticking
        await self.runner.stop()

    async def _online(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.online.tick()
            except Exception:  # noqa: BLE001 - the schedule outlives one bad tick
                log.exception("online evaluation tick failed")

    def queued(self) -> None:
        """A run was queued here: claim it now rather than at the next poll."""
        self.runner.poke()

    def cancelled(self, run_id: str) -> None:
        self.runner.cancel(run_id)

    def progress(self, run_id: str) -> Progress | None:
        return self.runner.progress.get(run_id)

    # MetricSource --------------------------------------------------------------------

    def value(
        self,
        metric: str,
        *,
        workspace_id: str,
        since: datetime,
        until: datetime,
        route: str | None = None,
        model: str | None = None,
    ) -> float | None:
        """`online_score_mean`: the mean online-evaluation score over the window."""
        with self.platform.db.transaction() as s:
            return feedback_store.window_value(
                s,
                "feedback_score_mean",
                workspace_id=workspace_id,
                since_s=int(since.timestamp()),
                until_s=int(until.timestamp()),
                route=route,
                model=model,
                source="evaluation",
            )
