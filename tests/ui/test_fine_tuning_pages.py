"""The fine-tuning pages: the job list with its start form (a bad training file refused
on the page naming the line, nothing stored), a job's loss curves, checkpoints and
events (hostile text escaped), cancel; a viewer reads only; then in real headless
Chromium: upload a file, start a job, open it, see its curve, cancel it.

These servers train nothing (`training_jobs=0`): what a worker reports is fed to the
service the way its runner stores it, so the pages are tested without minutes of
training (tests/training trains for real)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.registry.support import PASSWORD
from tests.training.support import example, jsonl
from tests.ui.test_evaluation_pages import _session, _user, browser_env
from tests.ui.test_tracing_pages import XSS

pytestmark = pytest.mark.local_model  # the base model is the built-in SmolLM2 GGUF
__all__ = ["browser_env"]  # the shared Chromium fixture, over this module's `env`


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path, training_jobs=0)


def _job(env: Env, **hyper: Any) -> str:
    files = {"file": ("train.jsonl", io.BytesIO(jsonl([example(i) for i in range(4)])))}
    r = env.admin.post("/v1/files", files=files, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    body = {"model": "smollm2", "training_file": r.json()["id"], "hyperparameters": hyper}
    r = env.admin.post("/v1/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _report(env: Env, job_id: str, *events: dict[str, Any]) -> None:
    """Claim the job as this server's runner would, and store what a worker reported."""
    service = env.app.state.platform.services["training"]
    assert service._claim(1) == [job_id]
    for event in events:
        service._record(job_id, event)


def _progress(env: Env, job_id: str) -> None:
    _report(
        env, job_id,
        {"event": "message", "message": XSS},
        {"event": "metrics", "step": 1, "total_steps": 4, "train_loss": 2.5},
        {"event": "metrics", "step": 2, "total_steps": 4, "train_loss": 1.75},
        {"event": "checkpoint", "step": 2, "path": "/nowhere/checkpoint-2",
         "metrics": {"step": 2, "train_loss": 1.75, "valid_loss": 1.9}},
    )  # fmt: skip


def test_pages_render_escape_and_refuse(env: Env) -> None:
    job_id = _job(env, n_epochs=2)
    _progress(env, job_id)
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        listing = client.get("/fine-tuning")
        assert listing.status_code == 200 and f'data-job="{job_id}"' in listing.text
        assert 'data-status="running"' in listing.text and "2/4" in listing.text
        page = client.get(f"/fine-tuning/{job_id}")
        assert page.status_code == 200
        assert XSS not in page.text and "&lt;" in page.text
        assert 'data-chart="loss"' in page.text and page.text.count('class="point"') == 3
        assert 'data-step="2"' in page.text and "1.9" in page.text
        assert "n_epochs=2" in page.text

        bad = jsonl([example(0)]) + b'{"messages": "nope"}\n'
        r = client.post(
            "/fine-tuning", data={"model": "smollm2"},
            files={"file": ("bad.jsonl", bad, "application/x-ndjson")}, headers=hx,
        )  # fmt: skip
        assert r.status_code == 400 and "bad.jsonl: line 2" in r.text
        r = client.post(
            "/fine-tuning", data={"model": "no-such-model"},
            files={"file": ("t.jsonl", jsonl([example(0)]), "application/x-ndjson")}, headers=hx,
        )  # fmt: skip
        assert r.status_code == 400 and "no chat model" in r.text
        jobs = env.admin.get("/v1/fine_tuning/jobs").json()["data"]
        assert [j["id"] for j in jobs] == [job_id]  # nothing half-written
        files = env.admin.get("/v1/files").json()["data"]
        assert len(files) == 1  # the refused uploads were not kept

        r = client.post(f"/fine-tuning/{job_id}/cancel", headers=hx)
        assert r.status_code == 200 and 'data-status="cancelled"' in r.text
        again = client.post(f"/fine-tuning/{job_id}/cancel", headers=hx)
        assert again.status_code == 400 and "is cancelled" in again.text
        assert client.get("/fine-tuning/ftjob_nope").status_code == 404

    _user(env, "ftv@example.com", "viewer")
    with _session(env, "ftv@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get("/fine-tuning")
        assert page.status_code == 200 and "Start a job" not in page.text
        assert viewer.get(f"/fine-tuning/{job_id}").status_code == 200
        r = viewer.post(
            "/fine-tuning", data={"model": "smollm2"},
            files={"file": ("t.jsonl", jsonl([example(0)]), "application/x-ndjson")}, headers=hx,
        )  # fmt: skip
        assert r.status_code == 403
        assert viewer.post(f"/fine-tuning/{job_id}/cancel", headers=hx).status_code == 403


@pytest.mark.browser
def test_start_watch_and_cancel_in_the_browser(
    browser_env: tuple[Any, Env], tmp_path: Path
) -> None:
    page, env = browser_env
    train = tmp_path / "train.jsonl"
    train.write_bytes(jsonl([example(i) for i in range(4)]))
    page.goto(env.url + "/fine-tuning")
    page.get_by_role("link", name="Fine-tuning").wait_for()
    page.set_input_files("input[name=file]", str(train))
    page.select_option("select[name=model]", "smollm2")
    page.fill("input[name=suffix]", "support")
    page.fill("input[name=n_epochs]", "2")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("status").wait_for()
    assert "Started ftjob_" in page.get_by_role("status").inner_text()
    job_id = page.locator("#jobs tbody tr").first.get_attribute("data-job")
    assert job_id and page.locator(f"[data-job={job_id}]").get_attribute("data-status") == "queued"
    _progress(env, job_id)
    page.get_by_role("link", name=job_id).click()
    page.locator("svg[data-chart=loss] .point").first.wait_for()
    assert page.locator("svg[data-chart=loss] .point").count() == 3
    assert page.locator("#checkpoints tbody tr[data-step='2']").count() == 1
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-live[data-status=cancelled]").wait_for()
    assert "The job was cancelled" in page.locator("#events").inner_text()
