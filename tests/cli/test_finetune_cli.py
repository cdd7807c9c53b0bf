"""`shipyard finetune` against a real server on loopback: run a job on a JSONL file
(followed to the end), its status and logs; a bad file refused naming its line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli.main import app
from tests.gateway.conftest import Env, make_env
from tests.training.support import example, jsonl

pytestmark = [pytest.mark.local_model, pytest.mark.training]
runner = CliRunner()


def _flat(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


@pytest.fixture
def env(tmp_path: Path, training_bases: Path) -> Iterator[Env]:
    yield from make_env(
        tmp_path, local_threads=1, training_threads=1, training_bases=training_bases
    )


def test_run_status_logs(env: Env, tmp_path: Path) -> None:
    auth = ["--url", env.url, "--key", env.owner_key]
    train = tmp_path / "train.jsonl"
    train.write_bytes(jsonl([example(i) for i in range(4)]))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl([example(0)]) + b"[1, 2]\n")

    refused = runner.invoke(app, ["finetune", "run", str(bad), "--model", "smollm2", *auth])
    assert refused.exit_code == 1 and "line 2" in _flat(refused.output), refused.output
    missing = runner.invoke(app, ["finetune", "run", str(tmp_path / "nope.jsonl"),
                                  "--model", "smollm2", *auth])  # fmt: skip
    assert missing.exit_code == 2 and "no such file" in _flat(missing.output)

    ran = runner.invoke(
        app,
        ["finetune", "run", str(train), "--model", "smollm2", "--suffix", "cli",
         "--epochs", "1", "--batch-size", "2", "--lora-rank", "4", *auth],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "succeeded" in ran.output and "ft:smollm2:cli:" in _flat(ran.output)
    job_id = re.findall(r"ftjob_[0-9a-f]+", ran.output)[-1]

    status = runner.invoke(app, ["finetune", "status", *auth])
    assert status.exit_code == 0 and "fine-tuning jobs" in status.output
    listed = runner.invoke(app, ["finetune", "status", "--json", *auth])
    rows = json.loads(listed.output)
    assert [(r["id"], r["step"], r["total_steps"]) for r in rows] == [(job_id, 2, 2)]
    one = runner.invoke(app, ["finetune", "status", job_id, "--json", *auth])
    assert one.exit_code == 0 and '"status": "succeeded"' in one.output
    logs = runner.invoke(app, ["finetune", "logs", job_id, *auth])
    assert logs.exit_code == 0
    lines = logs.output.splitlines()
    assert f"Created fine-tuning job: {job_id}" in lines[0]  # oldest first
    assert any("Step 2/2" in line for line in lines)
    assert any("The job has successfully completed" in line for line in lines)
    again = runner.invoke(app, ["finetune", "cancel", job_id, *auth])
    assert again.exit_code == 1 and "only a queued or running job" in _flat(again.output)
