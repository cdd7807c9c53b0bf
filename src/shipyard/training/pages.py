"""Fine-tuning in the UI, under /fine-tuning: the jobs with their progress and a form to
start one (a chat JSONL file uploaded, checked line by line); per job its loss curves
(training loss per step, validation loss at each checkpoint), checkpoints, events and
the model it made, refreshed while it runs, with a cancel button. Jobs are created and
cancelled through the service (the same checks and audit as the API); a refusal is a
message on the page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy import select
from starlette.responses import Response

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.evaluation.tables import RunRow
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.store import new_id
from shipyard.tracing.charts import line_chart
from shipyard.training.schemas import JobIn
from shipyard.training.tables import CheckpointRow, EventRow, JobRow
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/fine-tuning")
MAX_POINTS = 400  # a loss curve's points (a long job's steps are sampled)


def _bases(ctx: Ctx) -> list[str]:
    """The chat routes a job can start from (local GGUF models on llama.cpp)."""
    out = []
    for route in ctx.platform.gateway.snapshot.visible_routes(ctx.workspace_id):
        if route.kind == "chat" and any(
            d.provider.kind == "llama_cpp"
            and str(d.provider.options.get("model_path", "")).endswith(".gguf")
            for d in route.deployments
        ):
            out.append(route.name)
    return sorted(out)


def _list_page(
    ctx: Ctx, *, error: str | None = None, message: str | None = None,
    draft: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    with ctx.platform.db.transaction() as s:
        jobs = s.scalars(
            select(JobRow)
            .where(JobRow.workspace_id == ctx.workspace_id)
            .order_by(JobRow.created_at.desc())
            .limit(200)
        ).all()
        rows = [_view(j) for j in jobs]
    return render(
        ctx, "fine_tuning_list.html", "fine_tuning", 400 if error else 200,
        jobs=rows, bases=_bases(ctx), error=error, message=message, draft=draft or {},
    )  # fmt: skip


def _view(job: JobRow) -> dict[str, Any]:
    return {
        "id": job.id, "status": job.status, "model": job.model, "suffix": job.suffix,
        "step": job.step, "total": job.total_steps,
        "percent": round(100 * job.step / job.total_steps) if job.total_steps else 0,
        "fine_tuned_model": job.fine_tuned_model, "created_at": job.created_at,
        "finished_at": job.finished_at, "error": (job.error or {}).get("message"),
        "hyperparameters": job.hyperparameters, "trained_tokens": job.trained_tokens,
        "training_file": job.training_file, "validation_file": job.validation_file,
        "result": job.result or {},
    }  # fmt: skip


def _detail(ctx: Ctx, job_id: str) -> dict[str, Any]:
    with ctx.platform.db.transaction() as s:
        job = s.get(JobRow, job_id[:64])
        if job is None or job.workspace_id != ctx.workspace_id:
            raise NotFound(f"no fine-tuning job with id '{job_id[:64]}'")
        metrics = s.execute(
            select(EventRow.data)
            .where(EventRow.job_id == job.id, EventRow.type == "metrics")
            .order_by(EventRow.seq)
        ).all()
        checkpoints = s.scalars(
            select(CheckpointRow).where(CheckpointRow.job_id == job.id).order_by(CheckpointRow.step)
        ).all()
        events = s.scalars(
            select(EventRow)
            .where(EventRow.job_id == job.id, EventRow.type != "metrics")
            .order_by(EventRow.seq.desc())
            .limit(100)
        ).all()
        view = _view(job)
        validation = []
        for arm, label in (("fine_tuned", "fine-tuned"), ("base", "base")):
            run_id = view["result"].get("validation", {}).get(arm)
            run = s.get(RunRow, run_id) if run_id else None
            if run is not None:
                score = (run.aggregates or {}).get("scores", {}).get("exact_match") or {}
                validation.append({"arm": label, "id": run.id, "status": run.status,
                                   "target": run.target_label, "score": score})  # fmt: skip
        ckpts: list[dict[str, Any]] = [
            {"step": c.step, "metrics": c.metrics, "created_at": c.created_at} for c in checkpoints
        ]
        messages = [{"at": e.created_at, "level": e.level, "message": e.message} for e in events]
    train: dict[int, float] = {}
    for (data,) in metrics:  # a resumed job reports its steps again: the last one counts
        if data and "step" in data and "train_loss" in data:
            train[int(data["step"])] = float(data["train_loss"])
    steps = sorted(train)
    if len(steps) > MAX_POINTS:
        stride = -(-len(steps) // MAX_POINTS)
        steps = steps[::stride] + ([steps[-1]] if steps[-1] not in steps[::stride] else [])
    valid = {c["step"]: c["metrics"].get("valid_loss") for c in ckpts}
    final = view["result"].get("metrics", {}).get("valid_loss")
    if final is not None and steps:
        valid[steps[-1]] = final
    chart = line_chart(
        "Loss", "loss", "", [f"step {n}" for n in steps],
        {"training": [train[n] for n in steps],
         **({"validation": [valid.get(n) for n in steps]} if any(valid.values()) else {})},
        fmt=".3f",
    )  # fmt: skip
    return {"job": view, "chart": chart, "checkpoints": ckpts, "events": messages,
            "validation": validation}  # fmt: skip


def _page(ctx: Ctx, job_id: str, status: int = 200, **values: Any) -> Response:
    return render(
        ctx, "fine_tuning_job.html", "fine_tuning", status, **_detail(ctx, job_id), **values
    )


@router.get("", name="ui.fine_tuning")
def jobs(ctx: Ctx = Authorized("training:read")) -> Response:
    return _list_page(ctx)


@router.post("", name="ui.fine_tuning_create")
async def create(
    file: UploadFile = File(),
    model: str = Form(max_length=128),
    suffix: str = Form("", max_length=64),
    n_epochs: str = Form("", max_length=4),
    batch_size: str = Form("", max_length=4),
    lora_rank: str = Form("", max_length=4),
    ctx: Ctx = Authorized("training:write"),
) -> Response:
    limit = ctx.platform.settings.kb_upload_max_bytes
    data = await file.read(limit + 1)
    filename = file.filename or "train.jsonl"
    draft = {"model": model, "suffix": suffix, "n_epochs": n_epochs, "batch_size": batch_size,
             "lora_rank": lora_rank}  # fmt: skip

    def work() -> Response:
        from shipyard.retrieval.parsing import checked_name
        from shipyard.retrieval.tables import FileRow
        from shipyard.training import data as training_data

        if len(data) > limit:
            raise PayloadTooLarge(f"{filename}: the file exceeds {limit} bytes")
        name = checked_name(filename)
        training_data.read(data, training_data.method_of(data), name=name)
        hyper = {k: v for k, v in (("n_epochs", n_epochs), ("batch_size", batch_size),
                                   ("lora_rank", lora_rank)) if v.strip()}  # fmt: skip
        try:
            body = JobIn.model_validate(
                {
                    "model": model,
                    "training_file": "pending",
                    "suffix": suffix or None,
                    "hyperparameters": hyper or None,
                }  # fmt: skip
            )
        except ValidationError as exc:
            raise invalid(exc) from None
        with ctx.platform.db.transaction() as s:
            row = FileRow(
                id=new_id("file"), workspace_id=ctx.workspace_id, filename=name,
                purpose="fine-tune", size_bytes=len(data), data=data, created_by=ctx.actor.ref,
            )  # fmt: skip
            s.add(row)
            file_id = row.id
        service = ctx.platform.services["training"]
        try:
            job = service.create(ctx.actor, body.model_copy(update={"training_file": file_id}))
        except ShipyardError:
            with ctx.platform.db.transaction() as s:  # the upload was for this job only
                gone = s.get(FileRow, file_id)
                if gone is not None:
                    s.delete(gone)
            raise
        return _list_page(ctx, message=f"Started {job.id} on {job.model}.")

    try:
        return await run_in_threadpool(work)
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        return await run_in_threadpool(lambda: _list_page(ctx, error=detail, draft=draft))


@router.get("/{job_id}", name="ui.fine_tuning_job")
def job(job_id: str, ctx: Ctx = Authorized("training:read")) -> Response:
    return _page(ctx, job_id)


@router.post("/{job_id}/cancel", name="ui.fine_tuning_cancel")
async def cancel(job_id: str, ctx: Ctx = Authorized("training:write")) -> Response:
    service = ctx.platform.services["training"]
    try:
        await run_in_threadpool(service.cancel, ctx.actor, job_id)
    except InvalidInput as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        return await run_in_threadpool(lambda: _page(ctx, job_id, 400, error=detail))
    return await run_in_threadpool(lambda: _page(ctx, job_id, message="The job was cancelled."))
