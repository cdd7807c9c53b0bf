"""OpenAI's fine-tuning API over Shipyard's training jobs, so that the official `openai`
SDK fine-tunes unchanged (files uploaded at `/v1/files` with purpose `fine-tune`):

    POST/GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id}
    POST /v1/fine_tuning/jobs/{id}/cancel
    GET /v1/fine_tuning/jobs/{id}/events, GET /v1/fine_tuning/jobs/{id}/checkpoints

Lists page OpenAI's way (`after`: the last id of the page before, `limit`); events come
newest first. The job's model, once it succeeded, is a `model` for
`/v1/chat/completions` at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select
from starlette.requests import Request

from shipyard.errors import InvalidInput
from shipyard.http.openai_app import OpenAIStyleApp, RouteRow, page, parsed
from shipyard.identity.actor import Actor
from shipyard.training.schemas import JobIn
from shipyard.training.tables import CheckpointRow, EventRow, JobRow

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.training.service import Training

OPENAI_HYPER = ("n_epochs", "batch_size", "learning_rate_multiplier")


def job_object(row: JobRow) -> dict[str, Any]:
    hyper = {k: row.hyperparameters.get(k) for k in OPENAI_HYPER}
    return {
        "id": row.id,
        "object": "fine_tuning.job",
        "model": row.model,
        "created_at": int(row.created_at.timestamp()),
        "finished_at": int(row.finished_at.timestamp()) if row.finished_at else None,
        "fine_tuned_model": row.fine_tuned_model,
        "organization_id": row.workspace_id,
        "result_files": [],
        "status": row.status,
        "validation_file": row.validation_file,
        "training_file": row.training_file,
        "hyperparameters": hyper,
        "trained_tokens": row.trained_tokens if row.status == "succeeded" else None,
        "error": row.error,
        "seed": row.seed,
        "estimated_finish": None,
        "integrations": [],
        "user_provided_suffix": row.suffix or None,
        "metadata": row.meta or None,
        "method": {"type": row.method, row.method: {"hyperparameters": hyper}},
        # Shipyard's own: how far the job is
        "step": row.step,
        "total_steps": row.total_steps,
    }


def event_object(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "fine_tuning.job.event",
        "created_at": int(row.created_at.timestamp()),
        "level": row.level,
        "message": row.message,
        "type": row.type,
        "data": row.data,
    }


def checkpoint_object(row: CheckpointRow, job: JobRow) -> dict[str, Any]:
    name = job.fine_tuned_model or f"ft:{job.model}:{job.suffix or 'shipyard'}:{job.id}"
    return {
        "id": row.id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": int(row.created_at.timestamp()),
        "fine_tuned_model_checkpoint": f"{name}:ckpt-step-{row.step}",
        "fine_tuning_job_id": job.id,
        "step_number": row.step,
        "metrics": row.metrics,
    }


def _limit(request: Request, default: int = 20) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput("limit: a whole number from 1 to 100", param="limit") from None
    if not 1 <= value <= 100:
        raise InvalidInput("limit: a whole number from 1 to 100", param="limit")
    return value


class FineTuningApp(OpenAIStyleApp):
    face = "fine_tuning"

    def routes(self) -> list[RouteRow]:
        jobs, job = "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job_id}"
        return [
            (jobs, "POST", self.create, "training:write", "create fine-tuning jobs"),
            (jobs, "GET", self.listing, "training:read", "list fine-tuning jobs"),
            (job, "GET", self.retrieve, "training:read", "read fine-tuning jobs"),
            (job + "/cancel", "POST", self.cancel, "training:write", "cancel fine-tuning jobs"),
            (job + "/events", "GET", self.events, "training:read", "read fine-tuning jobs"),
            (job + "/checkpoints", "GET", self.checkpoints, "training:read",
             "read fine-tuning jobs"),
        ]  # fmt: skip

    @property
    def service(self) -> Training:
        found: Training = self.platform.services["training"]
        return found

    async def create(self, request: Request, actor: Actor) -> Any:
        body: JobIn = parsed(JobIn, await self.read(request))
        row = await anyio.to_thread.run_sync(self.service.create, actor, body)
        return job_object(row)

    async def listing(self, request: Request, actor: Actor) -> Any:
        limit, after = _limit(request), request.query_params.get("after")

        def work() -> Any:
            with self.platform.db.transaction() as s:
                q = select(JobRow).where(JobRow.workspace_id == actor.workspace_id)
                if after:
                    mark = s.get(JobRow, after[:64])
                    if mark is None or mark.workspace_id != actor.workspace_id:
                        raise InvalidInput(
                            f"after: no fine-tuning job '{after[:64]}'", param="after"
                        )
                    q = q.where(
                        (JobRow.created_at < mark.created_at)
                        | ((JobRow.created_at == mark.created_at) & (JobRow.id < mark.id))
                    )
                rows = s.scalars(
                    q.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
                ).all()
                return page([job_object(r) for r in rows[:limit]], len(rows) > limit)

        return await anyio.to_thread.run_sync(work)

    async def retrieve(self, request: Request, actor: Actor) -> Any:
        def work() -> Any:
            with self.platform.db.transaction() as s:
                return job_object(self.service.job(s, actor, request.path_params["job_id"]))

        return await anyio.to_thread.run_sync(work)

    async def cancel(self, request: Request, actor: Actor) -> Any:
        job_id = request.path_params["job_id"]
        row = await anyio.to_thread.run_sync(self.service.cancel, actor, job_id)
        return job_object(row)

    async def events(self, request: Request, actor: Actor) -> Any:
        return await self._children(request, actor, EventRow, EventRow.seq, "event", 20)

    async def checkpoints(self, request: Request, actor: Actor) -> Any:
        return await self._children(
            request, actor, CheckpointRow, CheckpointRow.step, "checkpoint", 10
        )

    async def _children(
        self, request: Request, actor: Actor, table: Any, order: Any, what: str, default: int
    ) -> Any:
        """A job's events or checkpoints, newest first, paged OpenAI's way (`after`: the
        last id of the page before)."""
        limit, after = _limit(request, default), request.query_params.get("after")

        def work() -> Any:
            with self.platform.db.transaction() as s:
                job = self.service.job(s, actor, request.path_params["job_id"])
                q = select(table).where(table.job_id == job.id)
                if after:
                    mark = s.get(table, after[:64])
                    if mark is None or mark.job_id != job.id:
                        raise InvalidInput(f"after: no {what} '{after[:64]}'", param="after")
                    q = q.where(order < getattr(mark, order.key))
                rows = s.scalars(q.order_by(order.desc()).limit(limit + 1)).all()
                show = event_object if table is EventRow else (lambda r: checkpoint_object(r, job))
                return page([show(r) for r in rows[:limit]], len(rows) > limit)

        return await anyio.to_thread.run_sync(work)


def mount(platform: Platform) -> FineTuningApp:
    return FineTuningApp(platform)
