"""What a finished fine-tuning job becomes, and the record of its progress: its events,
the provider and route that serve its model, the registry version with its lineage, and
the validation runs against its base."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from shipyard.errors import NotFound
from shipyard.identity.stored import still_valid
from shipyard.store import new_id
from shipyard.training.tables import EventRow, JobRow

if TYPE_CHECKING:
    from shipyard.platform import Platform


def add_event(
    s: Any, job_id: str, message: str, *, kind: str = "message",
    data: dict[str, Any] | None = None, level: str = "info",
) -> None:  # fmt: skip
    """The job's next event (`seq` one past its last), in the caller's transaction."""
    # the job's row held first: two transactions adding events to one job (the runner
    # and a cancel) take their turn instead of both reading the same last seq
    s.execute(select(JobRow.id).where(JobRow.id == job_id).with_for_update())
    seq = s.scalar(select(func.max(EventRow.seq)).where(EventRow.job_id == job_id))
    s.add(
        EventRow(
            id=new_id("ftevent"), job_id=job_id, seq=(seq or 0) + 1, level=level,
            type=kind, message=message[:2000], data=data,
        )
    )  # fmt: skip


def serve(platform: Platform, s: Any, job: JobRow, *, provider: str) -> None:
    """A provider and a route for the job's model (made by the platform: the
    provider reads files on this server, which only it may configure)."""
    from shipyard.gateway.config import manage
    from shipyard.gateway.config.schemas import DeploymentIn, ProviderCreate, RouteIn
    from shipyard.plugins import PROVIDERS

    options = {**job.base.get("options", {}), "model_path": job.base["gguf"],
               "lora_path": (job.result or {})["gguf"]}  # fmt: skip
    manage.create_provider(
        s, box=platform.box, kinds=platform.plugins.names(PROVIDERS),
        workspace_id=job.workspace_id,
        body=ProviderCreate(name=provider, kind="llama_cpp", options=options), platform=True,
    )  # fmt: skip
    assert job.fine_tuned_model is not None
    manage.put_route(
        s, workspace_id=job.workspace_id,
        body=RouteIn(
            name=job.fine_tuned_model, retries=0,
            description=f"{job.model} fine-tuned by {job.id}"[:500],
            deployments=[DeploymentIn(provider=provider, model=job.fine_tuned_model,
                                      timeouts=job.base.get("timeouts", {}))],
        ),
    )  # fmt: skip


def register(s: Any, job: JobRow) -> str:
    """A new version of the model `<base>-<suffix>` whose source is the job's route."""
    from shipyard.registry import assets
    from shipyard.retrieval.tables import FileRow

    asset_name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{job.model}-{job.suffix or 'ft'}")[:128]
    try:
        asset = assets.get_asset(s, workspace_id=job.workspace_id, kind="model", name=asset_name)
    except NotFound:
        asset = assets.create_asset(
            s, workspace_id=job.workspace_id, kind="model", name=asset_name,
            description=f"{job.model}, fine-tuned", actor=job.created_by,
        )  # fmt: skip
    datasets = []
    for file_id in (job.training_file, job.validation_file):
        row = s.get(FileRow, file_id) if file_id else None
        if row is not None:
            datasets.extend(exported_from(s, job.workspace_id, row.filename, row.data))
            datasets.append({"name": row.filename, "version": row.id})
    metrics = (job.result or {}).get("metrics", {})
    version = assets.add_version(
        s, asset,
        body={"source": {"kind": "route", "route": job.fine_tuned_model}, "params": {}},
        metadata={"job": job.id, "hyperparameters": job.hyperparameters, **metrics},
        lineage={"base_model": job.model, "datasets": datasets, "job": job.id,
                 "evaluations": []},
        message=f"fine-tuned by {job.id}", author=job.created_by,
    )  # fmt: skip
    return f"{asset.name}@v{version.number}"


def validate(platform: Platform, job_id: str) -> None:
    """Validation before deploy: the fine-tuned model and its base evaluated on the
    held-out file (a dataset made of it: each example's messages before its last
    answer, that answer expected), scored by exact match, as two evaluation runs
    queued now. The fine-tuned run's subject is the registered version, so the
    environments' quality gates (and its lineage) see it."""
    from shipyard.evaluation import datasets, runs
    from shipyard.evaluation.schemas import MAX_CHANGE, ItemIn, RunIn, ScorerIn, TargetIn
    from shipyard.retrieval.tables import FileRow
    from shipyard.training import data

    evaluation = platform.services.get("evaluation")
    with platform.db.transaction() as s:
        job = s.get(JobRow, job_id, with_for_update=True)
        if job is None or job.status != "succeeded" or not job.validation_file:
            return
        file = s.get(FileRow, job.validation_file)
        actor = still_valid(s, job.actor, job.workspace_id, platform.grants)
        if evaluation is None or file is None or isinstance(actor, str):
            why = actor if isinstance(actor, str) else "the validation file is gone"
            add_event(s, job_id, f"Validation skipped: {why}", level="warn")
            return
        items = []
        for example in data.read(file.data, job.method, name=file.filename):
            if job.method == data.DPO:  # the preferred answer is the one expected
                items.append(ItemIn(inputs={"messages": example["prompt"]},
                                    expected=example["chosen"]))  # fmt: skip
                continue
            last = max(i for i, m in enumerate(example) if m["role"] == "assistant")
            items.append(ItemIn(inputs={"messages": example[:last]},
                                expected=example[last]["content"]))  # fmt: skip
        short = job.id.partition("_")[2]
        ds = datasets.create(
            s, workspace_id=job.workspace_id, name=f"ft-{short}-validation",
            description=f"held out for {job.id}", author=job.created_by,
        )  # fmt: skip
        version = datasets.change(
            s, ds, datasets.Change(add=items[:MAX_CHANGE]),
            author=job.created_by, message=f"the validation file of {job.id}",
        )  # fmt: skip
        registered = str((job.result or {}).get("registered", ""))
        name, _, number = registered.partition("@v")
        made = {}
        for arm, route, subject in (
            ("fine_tuned", job.fine_tuned_model, f"model:{name}@{number}" if number else None),
            ("base", job.model, None),
        ):
            body = RunIn(
                name=f"{job.id} {arm.replace('_', '-')}", dataset=ds.name,
                dataset_version=version.number,
                target=TargetIn(kind="route", ref=str(route)),
                scorers=[ScorerIn(name="exact_match")],
                params={"temperature": 0, "max_tokens": 128, "seed": job.seed},
                concurrency=1, subject=subject,
            )  # fmt: skip
            made[arm] = runs.create(
                s, plugins=platform.plugins, gateway=platform.services["gateway"],
                actor=actor, body=body,
            ).id  # fmt: skip
        job.result = {**(job.result or {}), "validation": {"dataset": ds.name, **made}}
        add_event(
            s, job_id,
            f"Validation: {job.fine_tuned_model} against {job.model} on {len(items)} "
            f"held-out examples (runs {made['fine_tuned']}, {made['base']})",
            data={"dataset": ds.name, **made},
        )  # fmt: skip
    evaluation.runner.poke()


EXPORT_NAME = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]{1,128})-v(?P<version>[0-9]{1,10})-(?P<format>openai|dpo)\.jsonl$"
)


def exported_from(s: Any, workspace_id: str, filename: str, data: bytes) -> list[dict[str, str]]:
    """The dataset version a training file was exported from: its export's file name,
    `<dataset>-v<N>-<openai|dpo>.jsonl`, kept on upload, names a version of this
    workspace, and the file holds exactly what that version exports in that format (a
    version's items never change, so its export does not). A file that is only named
    like an export, or was edited after, links nothing."""
    from shipyard.evaluation import datasets, files
    from shipyard.evaluation.tables import DatasetRow, DatasetVersionRow

    found = EXPORT_NAME.match(filename)
    if found is None:
        return []
    name, number = found["name"], int(found["version"])
    dataset = s.scalars(
        select(DatasetRow)
        .join(DatasetVersionRow, DatasetRow.id == DatasetVersionRow.dataset_id)
        .where(DatasetRow.workspace_id == workspace_id, DatasetRow.name == name,
               DatasetVersionRow.number == number)
    ).first()  # fmt: skip
    if dataset is None:
        return []
    lines, _ = files.export(datasets.items(s, dataset, number), found["format"])
    if b"".join(lines) != data:
        return []
    return [{"name": name, "version": str(number)}]
