"""A served fine-tune beats its base: a LoRA trained for a few steps on a narrow task
(support messages -> a JSON category), converted to GGUF and served on the shipped
Q4_1 base by llama-server (`local_engine: server`), scores higher than the base on
held-out messages, in the job's own validation runs and when called through
/v1/chat/completions. (Re-quantizing a merged fine-tune to 4 bits would erase it; the
adapter on the base does not.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from shipyard.gateway.providers.llama_server import binary
from tests.gateway.conftest import Env, make_env
from tests.training.support import CATEGORIES, SYSTEM, upload, wait, wait_for

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.training,
    pytest.mark.skipif(binary() is None, reason="llama-server is built by scripts/setup.sh --test"),
]


@pytest.fixture
def env(tmp_path: Path, training_bases: Path) -> Iterator[Env]:
    yield from make_env(
        tmp_path, local_threads=1, training_threads=1, training_bases=training_bases,
        local_engine="server", local_slots=2,
    )  # fmt: skip


def _ended(env: Env, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = env.admin.get(f"/api/evals/runs/{run_id}").json()
    return None if run["status"] in ("queued", "running") else run


def test_a_served_fine_tune_beats_its_base(env: Env) -> None:
    client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=env.owner_key, max_retries=0)
    job = client.fine_tuning.jobs.create(
        model="smollm2",
        training_file=upload(client, 24),
        validation_file=upload(client, 6, "valid.jsonl", start=300),
        suffix="cls",
        extra_body={"hyperparameters": {"n_epochs": 2, "batch_size": 4,
                                        "learning_rate_multiplier": 5, "lora_rank": 8}},
    )  # fmt: skip
    done = wait(client, job.id)
    assert done.status == "succeeded", done.error

    said = wait_for(lambda: next((e for e in client.fine_tuning.jobs.list_events(job.id)
                                  if e.message.startswith("Validation: ")), None))  # fmt: skip
    runs = {
        arm: wait_for(lambda a=arm: _ended(env, said.data[a])) for arm in ("fine_tuned", "base")
    }
    score = {arm: run["aggregates"]["scores"]["exact_match"]["mean"] for arm, run in runs.items()}
    assert all(run["status"] == "completed" for run in runs.values()), runs
    assert score["fine_tuned"] > score["base"], score

    def answers(model: str) -> int:
        right = 0
        for i, category in enumerate(CATEGORIES * 2, start=700):
            reply = client.chat.completions.create(
                model=model, temperature=0, max_tokens=16,
                messages=[{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": f"I have a {category} question, case {i}."}],
            )  # fmt: skip
            text = reply.choices[0].message.content or ""
            right += text.strip() == json.dumps({"category": category})
        return right

    tuned, base = answers(done.fine_tuned_model), answers("smollm2")
    print(f"validation {score}; chat: fine-tuned {tuned}/6, base {base}/6")
    assert tuned > base, (tuned, base)
    # it was llama-server that served the adapter
    gateway = env.app.state.platform.services["gateway"]
    short = job.id.partition("_")[2]
    [provider] = [p for spec, p in gateway.pool._live.values() if spec.name == f"ft-{short}"]
    assert provider._servers is not None and provider._servers.servers[0].alive()
    assert provider._servers.args.lora and provider._servers.args.lora.endswith(".gguf")
