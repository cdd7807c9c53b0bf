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
from typing import Any

import openai
import pytest

from tests.gateway.conftest import Env, make_env
from tests.training.support import SYSTEM, example, jsonl, upload, wait, wait_for

pytestmark = [pytest.mark.local_model, pytest.mark.training]


@pytest.fixture
def bases(training_bases: Path) -> Path:
    return training_bases


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
    assert messages[-1] == f"Created fine-tuning job: {job.id}"  # newest first
    assert "The job has successfully completed" in messages[:3]
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
    short = job.id.partition("_")[2]
    rec = env.records(route=done.fine_tuned_model)[0]
    assert rec["provider"] == f"ft-{short}" and rec["status"] == 200
    assert done.fine_tuned_model in {m.id for m in client.models.list()}

    # registered, with its lineage: a registry alias (and so a canary split) can serve it
    r = env.admin.get("/api/registry/models/smollm2-support/versions/1")
    assert r.status_code == 200, r.text
    version = r.json()
    assert version["lineage"]["job"] == job.id and version["lineage"]["base_model"] == "smollm2"
    assert [d["version"] for d in version["lineage"]["datasets"]] == [train, valid]
    assert version["body"]["source"] == {"kind": "route", "route": done.fine_tuned_model}
    assert version["metadata"]["valid_loss"] > 0

    # validation before deploy: the fine-tuned model and its base on the held-out file
    said = wait_for(lambda: next((e for e in client.fine_tuning.jobs.list_events(job.id)
                                  if e.message.startswith("Validation: ")), None))  # fmt: skip
    ran = {arm: wait_for(lambda a=arm: _ended(env, said.data[a])) for arm in ("fine_tuned", "base")}
    for run in ran.values():
        assert run["status"] == "completed", run
        assert run["total"] == 4 and run["aggregates"]["scores"]["exact_match"]["n"] == 4, run
    assert ran["fine_tuned"]["subject"] == "model:smollm2-support@1"
    assert ran["base"]["target"]["ref"] == "smollm2"
    graph = env.admin.get("/api/registry/models/smollm2-support/versions/1/lineage").json()
    assert f"evaluation:{said.data['fine_tuned']}" in {n["id"] for n in graph["nodes"]}

    # the environment's gate reads that run: a model that scores too low stays out
    gate = {"dataset": said.data["dataset"], "scorers": {"exact_match": {"min": 0.99}}}
    r = env.admin.put("/api/registry/policies/staging", json={"gates": {"evaluation": gate}})
    assert r.status_code == 200, r.text
    r = env.admin.post("/api/registry/promotions", json={
        "name": "smollm2-support", "version": 1, "environment": "staging"})  # fmt: skip
    # (two steps of training do not get a model to 0.99)
    assert ran["fine_tuned"]["aggregates"]["scores"]["exact_match"]["mean"] < 0.99
    assert r.status_code == 409 and "exact_match" in r.text, r.text


def _ended(env: Env, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = env.admin.get(f"/api/evals/runs/{run_id}").json()
    return None if run["status"] in ("queued", "running") else run


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
        ({"model": "smollm2", "training_file": train, "method": {"type": "reinforcement"}},
         "method"),
        ({"model": "smollm2", "training_file": train, "method": {"type": "dpo"}},
         "training_file: train.jsonl: line 1"),
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
    wait_for(lambda: not proc.running, timeout=30)
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


def _pairs(n: int, start: int = 0) -> bytes:
    rows = []
    for i in range(start, start + n):
        chat = example(i)["messages"]
        rows.append({
            "input": {"messages": chat[:2]},
            "preferred_output": [chat[2]],
            "non_preferred_output": [{"role": "assistant", "content": "I cannot tell."}],
        })  # fmt: skip
    return jsonl(rows)


def test_a_dpo_job_on_preference_pairs(env: Env) -> None:
    client = _client(env)
    train = client.files.create(file=("pairs.jsonl", io.BytesIO(_pairs(4))), purpose="fine-tune")
    valid = client.files.create(
        file=("held.jsonl", io.BytesIO(_pairs(2, start=50))), purpose="fine-tune"
    )
    sft_file = upload(client, 2)
    with pytest.raises(openai.BadRequestError) as exc:  # chat examples are not pairs
        client.fine_tuning.jobs.create(
            model="smollm2", training_file=sft_file, method={"type": "dpo"}
        )
    assert "line 1" in exc.value.message
    job = client.fine_tuning.jobs.create(
        model="smollm2", training_file=train.id, validation_file=valid.id, suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 2, "beta": 0.2, "checkpoint_every": 1,
            "lora_rank": 4}}},
    )  # fmt: skip
    assert job.method.type == "dpo" and job.hyperparameters.n_epochs == 1
    done = wait(client, job.id)
    assert done.status == "succeeded", done.error
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    metrics = [e.data for e in events if e.type == "metrics"]
    assert sorted(m["step"] for m in metrics) == [1, 2]
    assert all(isinstance(m["reward_margin"], float) for m in metrics), metrics
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)] == [2, 1]
    reply = client.chat.completions.create(
        model=done.fine_tuned_model, messages=example(7)["messages"][:2], max_tokens=8
    )
    assert reply.choices[0].message.content is not None
