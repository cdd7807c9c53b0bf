"""The same fine-tuning job on a Ray cluster (`training_backend: ray`): a real local
Ray instance; the worker runs in an actor that holds the job's CPUs, its events and
checkpoints come back as they do locally, and the model it made is served at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import Env, make_env
from tests.training.support import SYSTEM, upload, wait

pytestmark = [pytest.mark.local_model, pytest.mark.training, pytest.mark.ray]


@pytest.fixture
def env(tmp_path: Path, training_bases: Path, ray_address: str) -> Iterator[Env]:
    yield from make_env(
        tmp_path, local_threads=1, training_threads=1, training_bases=training_bases,
        training_backend="ray", ray_address=ray_address,
    )  # fmt: skip


def test_a_job_runs_on_ray(env: Env) -> None:
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=env.owner_key, max_retries=0)
    job = client.fine_tuning.jobs.create(
        model="smollm2", training_file=upload(client, 8), suffix="ray",
        extra_body={"hyperparameters": {"n_epochs": 1, "batch_size": 4, "checkpoint_every": 1}},
    )  # fmt: skip
    done = wait(client, job.id)
    assert done.status == "succeeded", done.error
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert "The worker runs on the Ray cluster (1 CPUs)" in events
    steps = [
        e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"
    ]
    assert sorted(e.data["step"] for e in steps) == [1, 2]
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data] == [1]
    reply = client.chat.completions.create(
        model=done.fine_tuned_model, max_tokens=8, temperature=0,
        messages=[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": "I have a billing question, case 900."}],
    )  # fmt: skip
    assert reply.choices[0].message.content
