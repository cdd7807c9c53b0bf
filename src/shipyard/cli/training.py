"""`shipyard finetune ...`: fine-tune a local model on a JSONL file and follow it.

shipyard finetune run train.jsonl --model smollm2 --suffix support --epochs 2
shipyard finetune status                 # the jobs, newest first
shipyard finetune status ftjob_...       # one job
shipyard finetune logs ftjob_... -f      # its events as they come
shipyard finetune cancel ftjob_...
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, fail
from shipyard.sdk.training import ENDED

app = typer.Typer(help="Fine-tuning: LoRA jobs on local models.", no_args_is_help=True)
err = Console(stderr=True)
STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}


def _when(ts: int | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _print_job(job: Any) -> None:
    console.print(
        Text(f"{job.id}  ", style="bold") + Text(job.status, style=STYLE.get(job.status, ""))
    )
    console.print(f"  base model      {job.model}")
    console.print(f"  progress        step {job.step} of {job.total_steps or '?'}")
    if job.fine_tuned_model:
        console.print(f"  model           [bold]{job.fine_tuned_model}[/bold]")
    if job.trained_tokens:
        console.print(f"  trained tokens  {job.trained_tokens:,}")
    if job.error:
        console.print(f"  error           [red]{job.error.get('message', '')}[/red]")


def _loss(events: list[Any]) -> float | None:
    for e in events:
        if e.type == "metrics" and e.data and "train_loss" in e.data:
            return float(e.data["train_loss"])
    return None


@app.command("run")
def run(
    file: Path,
    model: Annotated[str, typer.Option("--model", help="The base model (a local GGUF route).")],
    validation: Annotated[
        Path | None, typer.Option("--validation", help="A held-out JSONL file.")
    ] = None,
    suffix: Annotated[str | None, typer.Option("--suffix", help="Names the new model.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    lr_multiplier: Annotated[float | None, typer.Option("--lr-multiplier", min=0.0)] = None,
    lora_rank: Annotated[int | None, typer.Option("--lora-rank", min=1)] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", min=1)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0)] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Print the job and return.")] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload FILE (chat JSONL), start a job, and follow it with a progress bar."""
    for path in (file, validation):
        if path is not None and not path.is_file():
            fail(f"{path}: no such file")
    given = {"n_epochs": epochs, "batch_size": batch_size,
             "learning_rate_multiplier": lr_multiplier, "lora_rank": lora_rank,
             "checkpoint_every": checkpoint_every}  # fmt: skip
    hyper = {k: v for k, v in given.items() if v is not None}
    with client(url, key) as c:
        train_id = c.fine_tuning.upload(file)
        valid_id = c.fine_tuning.upload(validation) if validation is not None else None
        job = c.fine_tuning.create(
            model, train_id, validation_file=valid_id, suffix=suffix,
            hyperparameters=hyper or None, seed=seed,
        )  # fmt: skip
        if not detach:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                console=err,
                transient=as_json,
            ) as bar:
                task = bar.add_task(job.status, total=None, loss="-")

                def show(j: Any) -> None:
                    loss = _loss(c.fine_tuning.events(j.id, limit=5)) if j.step else None
                    bar.update(
                        task, completed=j.step, total=j.total_steps or None,
                        description=j.status, loss=f"{loss:.3f}" if loss is not None else "-",
                    )  # fmt: skip

                job = c.fine_tuning.wait(job.id, poll=1.0, on_progress=show)
    if as_json:
        console.print_json(orjson.dumps(job.model_dump(mode="json")).decode())
    else:
        _print_job(job)
    if job.status in ("failed", "cancelled"):
        raise typer.Exit(1)


@app.command("status")
def status(
    job_id: Annotated[str | None, typer.Argument(help="One job (default: all).")] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The jobs, newest first, or one job."""
    with client(url, key) as c:
        jobs = [c.fine_tuning.get(job_id)] if job_id else c.fine_tuning.list(limit=100)
    if as_json:
        console.print_json(orjson.dumps([j.model_dump(mode="json") for j in jobs]).decode())
        return
    if job_id:
        _print_job(jobs[0])
        return
    t = Table(title="fine-tuning jobs")
    for col in ("id", "status", "model", "progress", "fine-tuned model", "created"):
        t.add_column(col)
    for j in jobs:
        t.add_row(
            j.id, Text(j.status, style=STYLE.get(j.status, "")), j.model,
            f"{j.step}/{j.total_steps or '?'}", j.fine_tuned_model or "-", _when(j.created_at),
        )  # fmt: skip
    console.print(t)


@app.command("logs")
def logs(
    job_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """A job's events, oldest first (with -f, until the job ends)."""
    seen: set[str] = set()
    with client(url, key) as c:
        while True:
            # the status first: the events read after it include the job's last ones
            ended = follow and c.fine_tuning.get(job_id).status in ENDED
            fresh = [e for e in c.fine_tuning.events(job_id, limit=100) if e.id not in seen]
            for e in reversed(fresh):
                seen.add(e.id)
                style = "red" if e.level == "error" else ("dim" if e.type == "metrics" else "")
                line = Text(f"{_when(e.created_at)}  ", style="dim") + Text(e.message, style=style)
                console.print(line)
            if not follow or ended:
                return
            time.sleep(1.0)


@app.command("cancel")
def cancel(job_id: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Stop a queued or running job."""
    with client(url, key) as c:
        job = c.fine_tuning.cancel(job_id)
    _print_job(job)
