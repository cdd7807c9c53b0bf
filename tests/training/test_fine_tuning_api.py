"""Fine-tuning through the official `openai` SDK, unchanged: files uploaded with purpose
`fine-tune` (checked line by line), a job created, trained for real (LoRA on
SmolLM2-135M, a few steps), its events and checkpoints listed, and the model it made
called at once on `/v1/chat/completions` (its adapter on the base GGUF, on llama.cpp).
Also: cancelling stops the worker; a job stopped with its server resumes from its last
checkpoint when the server comes back; bad input is a 4xx naming what is wrong."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import Env, make_env
from tests.training.support import SYSTEM, jsonl, upload, wait, wait_for

pytestmark = [pytest.mark.local_model, pytest.mark.training]


@pytest.fixture(scope="session")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base models converted for training once for the whole run (about 30 s)."""
    return tmp_path_factory.mktemp("bases")


def _env(path: Path, bases: Path) -> Iterator[Env]:
    # one thread for the model and for training: the suite must not oversubscribe
    yield from make_env(path, local_threads=1, training_threads=1, training_bases=bases)


served = contextlib.contextmanager(_env)


@pytest.fixture
def env(tmp_path: Path, bases: Path) -> Iterator[Env]:
    yield from _env(tmp_path, bases)


def _client(env: Env, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{env.url}/v1", api_key=key or env.owner_key, max_retries=0)


def test_fine_tune_and_call_the_model_through_the_openai_sdk(env: Env) -> None:
    client = _client(env)
    train = upload(client, 8)
    valid = upload(client, 4, "valid.jsonl", start=100)
    job = client.fine_tuning.jobs.create(
        model="smollm2",
        training_file=train,
        validation_file=valid,
        suffix="support",
        # Shipyard's own LoRA settings ride along with OpenAI's
        extra_body={"hyperparameters": {"n_epochs": 1, "batch_size": 4, "checkpoint_every": 1,
                                        "lora_rank": 8}},
        seed=7,
    )  # fmt: skip
    assert job.object == "fine_tuning.job" and job.status == "queued"
    assert job.hyperparameters.n_epochs == 1 and job.seed == 7
    done = wait(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:smollm2:support:{job.id.partition('_')[2]}"
    assert done.trained_tokens and done.trained_tokens > 0 and done.finished_at

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"  # newest first
    assert messages[-1] == f"Created fine-tuning job: {job.id}"
    metrics = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in reversed(metrics)] == [1, 2]
    assert all(e.data["train_loss"] > 0 for e in metrics)
    page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(page.data) == 2 and page.has_more

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [1]
    assert checkpoints[0].metrics.valid_loss and checkpoints[0].metrics.valid_loss > 0
    assert checkpoints[0].fine_tuned_model_checkpoint.endswith(":ckpt-step-1")
    assert job.id in {j.id for j in client.fine_tuning.jobs.list()}

    reply = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": "I have a billing question, case 900."}],
        max_tokens=12,
        temperature=0,
    )  # fmt: skip
    assert reply.choices[0].message.content
    rec = env.records(route=done.fine_tuned_model)[0]
    assert rec["provider"] == f"fine-tune {job.id}" and rec["status"] == 200


def test_a_training_file_is_checked_line_by_line(env: Env) -> None:
    client = _client(env)
    bad = jsonl([{"messages": [{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "hello"}]}])  # fmt: skip
    bad += b'{"messages": [{"role": "user", "content": "no answer"}]}\n'
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("t.jsonl", io.BytesIO(bad)), purpose="fine-tune")
    assert "line 2" in exc.value.message and "assistant" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("t.jsonl", io.BytesIO(b"{not json\n")), purpose="fine-tune")
    assert "line 1 is not JSON" in exc.value.message
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("t.jsonl", io.BytesIO(b"\n\n")), purpose="fine-tune")


def test_bad_jobs_are_refused_with_what_is_wrong(env: Env) -> None:
    client = _client(env)
    train = upload(client, 2)
    other = client.files.create(file=("a.txt", io.BytesIO(b"notes")), purpose="assistants")
    cases = [
        ({"model": "smollm2", "training_file": "file_nope"}, "training_file"),
        ({"model": "smollm2", "training_file": other.id}, "training_file"),
        ({"model": "no-such-model", "training_file": train}, "model"),
        ({"model": "all-minilm-l6-v2", "training_file": train}, "model"),
        ({"model": "smollm2", "training_file": train, "method": {"type": "dpo"}}, "method"),
        ({"model": "smollm2", "training_file": train, "suffix": "bad suffix!"}, "suffix"),
        ({"model": "smollm2", "training_file": train, "hyperparameters": {"n_epochs": 0}},
         "n_epochs"),
    ]  # fmt: skip
    for body, field in cases:
        r = env.admin.post("/v1/fine_tuning/jobs", json=body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["error"]["message"], (body, r.json())
    r = env.admin.get("/v1/fine_tuning/jobs/ftjob_missing")
    assert r.status_code == 404 and r.json()["error"]["param"] == "job_id"
    r = env.admin.get("/v1/fine_tuning/jobs", params={"limit": 0})
    assert r.status_code == 400
    r = env.admin.delete("/v1/fine_tuning/jobs")
    assert r.status_code == 405
    assert env.admin.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing half-written

    viewer, _ = env.key("viewer", role="viewer")
    with pytest.raises(openai.PermissionDeniedError):
        _client(env, viewer).fine_tuning.jobs.create(model="smollm2", training_file=train)
    assert _client(env, viewer).fine_tuning.jobs.list().data == []
    with pytest.raises(openai.AuthenticationError):
        _client(env, "sk-wrong").fine_tuning.jobs.list()


def test_cancel_stops_the_worker(env: Env) -> None:
    client = _client(env)
    job = client.fine_tuning.jobs.create(
        model="smollm2", training_file=upload(client, 4),
        hyperparameters={"n_epochs": 50, "batch_size": 2},
    )  # fmt: skip
    service = env.app.state.platform.services["training"]
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).step >= 1)
    proc = service.procs[job.id]
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    wait_for(lambda: proc.returncode is not None, timeout=30)
    steps = client.fine_tuning.jobs.retrieve(job.id).step
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(job.id).data[0].message == "The job was cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
    assert client.fine_tuning.jobs.retrieve(job.id).step == steps  # nothing more recorded


def test_a_job_resumes_from_its_checkpoint_after_a_restart(tmp_path: Path, bases: Path) -> None:
    with served(tmp_path, bases) as env:
        client = _client(env)
        job = client.fine_tuning.jobs.create(
            model="smollm2", training_file=upload(client, 4),
            extra_body={"hyperparameters": {"n_epochs": 3, "batch_size": 2,
                                            "checkpoint_every": 2}},
        )  # fmt: skip
        wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data)
    # the server stopped: its worker was stopped, the job left to be resumed
    with served(tmp_path, bases) as env:
        client = _client(env)
        done = wait(client, job.id)
        assert done.status == "succeeded", done.error
        events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    resumed = [e.message for e in events if e.message.startswith("resumed from the checkpoint")]
    assert resumed, [e.message for e in events]
    step = int(resumed[0].rsplit(" ", 1)[1])
    assert step >= 2 and step % 2 == 0
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert sorted(set(steps)) == [1, 2, 3, 4, 5, 6]  # none skipped
