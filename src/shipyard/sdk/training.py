"""Fine-tuning from the SDK, over the OpenAI-compatible API (`/v1/files`,
`/v1/fine_tuning/jobs`):

    train = client.fine_tuning.upload("train.jsonl")          # checked line by line
    job = client.fine_tuning.create("smollm2", train, suffix="support",
                                    hyperparameters={"n_epochs": 2, "lora_rank": 16})
    job = client.fine_tuning.wait(job.id, on_progress=lambda j: print(j.step, j.total_steps))
    print(job.fine_tuned_model)                               # a model for /v1/chat/completions

With `AsyncClient` every method returns an awaitable (but `wait`, which is sync only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.sdk.calls import Call, _as
from shipyard.sdk.evaluation import _seg
from shipyard.training.schemas import CheckpointPublic, EventPublic, JobPublic

ENDED = ("succeeded", "failed", "cancelled")
JOBS = "/v1/fine_tuning/jobs"


def _data(kind: Any) -> Callable[[Any], Any]:
    parse = _as(list[kind])
    return lambda body: parse(body["data"])


class FineTuning:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def upload(self, path: str | Path, *, name: str | None = None) -> Any:
        """-> the file's id; a file that is not valid training JSONL is refused (400)
        naming its first bad line."""
        path = Path(path)
        files = {"file": (name or path.name, path.read_bytes())}
        return self._run(
            Call("POST", "/v1/files", lambda b: b["id"], files=files, data={"purpose": "fine-tune"})
        )

    def create(
        self,
        model: str,
        training_file: str,
        *,
        validation_file: str | None = None,
        suffix: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Any:
        """-> JobPublic (queued). `hyperparameters`: OpenAI's (`n_epochs`, `batch_size`,
        `learning_rate_multiplier`) and LoRA's (`lora_rank`, `lora_alpha`, `max_length`,
        `checkpoint_every`)."""
        body: dict[str, Any] = {"model": model, "training_file": training_file}
        extra = {"validation_file": validation_file, "suffix": suffix,
                 "hyperparameters": hyperparameters, "seed": seed}  # fmt: skip
        body.update({k: v for k, v in extra.items() if v is not None})
        return self._run(Call("POST", JOBS, _as(JobPublic), json=body))

    def list(self, *, limit: int = 20) -> Any:
        """-> list[JobPublic], newest first."""
        return self._run(Call("GET", JOBS, _data(JobPublic), params={"limit": limit}))

    def get(self, job_id: str) -> Any:
        return self._run(Call("GET", f"{JOBS}/{_seg(job_id)}", _as(JobPublic)))

    def cancel(self, job_id: str) -> Any:
        return self._run(Call("POST", f"{JOBS}/{_seg(job_id)}/cancel", _as(JobPublic)))

    def events(self, job_id: str, *, after: str | None = None, limit: int = 100) -> Any:
        """-> list[EventPublic], newest first (`after`: the last id of the page before)."""
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        path = f"{JOBS}/{_seg(job_id)}/events"
        return self._run(Call("GET", path, _data(EventPublic), params=params))

    def checkpoints(self, job_id: str) -> Any:
        """-> list[CheckpointPublic], newest first."""
        path = f"{JOBS}/{_seg(job_id)}/checkpoints"
        return self._run(Call("GET", path, _data(CheckpointPublic), params={"limit": 100}))

    def wait(
        self,
        job_id: str,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[JobPublic], None] | None = None,
    ) -> JobPublic:
        """Polls until the job has ended (sync clients only)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job: JobPublic = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.status in ENDED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            time.sleep(poll)
