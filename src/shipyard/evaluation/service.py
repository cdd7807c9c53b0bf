"""The evaluation capability's service: the local worker that executes evaluation runs
(bounded concurrency, resumed after a restart, cancellable; see `runner`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.evaluation.runner import Progress, Runner

if TYPE_CHECKING:
    from shipyard.platform import Platform


class Evaluation:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.runner = Runner(
            platform,
            slots=settings.eval_concurrent_runs,
            lease_s=settings.eval_lease_seconds,
            chunk=8,
        )

    async def start(self) -> None:
        await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()

    def queued(self) -> None:
        """A run was queued here: claim it now rather than at the next poll."""
        self.runner.poke()

    def cancelled(self, run_id: str) -> None:
        self.runner.cancel(run_id)

    def progress(self, run_id: str) -> Progress | None:
        return self.runner.progress.get(run_id)
