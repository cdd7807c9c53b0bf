"""A job's row is changed by the runner and by callers (cancel) at once: each change that
depends on the job's status holds the row, so neither overwrites the other, and a job's
events are numbered once each. On SQLite and on PostgreSQL (where two transactions do run
at once)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from shipyard.store import new_id, utcnow
from shipyard.training.tables import EventRow, JobRow


def _running_job(client: TestClient) -> tuple[Any, str]:
    """A job this server's runner holds (as if training), its lease far ahead."""
    platform: Any = client.app.state.platform  # type: ignore[attr-defined]  # set by create_app
    service = platform.services["training"]
    workspace_id = client.get("/api/me").json()["workspace"]["id"]
    job_id = new_id("ftjob")
    with platform.db.transaction() as s:
        s.add(
            JobRow(
                id=job_id, workspace_id=workspace_id, model="smollm2", method="supervised",
                training_file="file-x", hyperparameters={}, seed=1, base={},
                status="running", worker=service.worker,
                lease_until=utcnow() + timedelta(hours=1),
            )
        )  # fmt: skip
    return service, job_id


def test_a_cancel_waits_for_the_runner_and_does_not_undo_its_result(client: TestClient) -> None:
    service, job_id = _running_job(client)
    held, go = threading.Event(), threading.Event()

    def runner() -> None:  # the runner finishing the job, slowly
        with service.platform.db.transaction() as s:
            job = service._ours(s, job_id)
            assert job is not None
            held.set()
            go.wait(5)
            job.status, job.finished_at, job.lease_until = "succeeded", utcnow(), None

    t = threading.Thread(target=runner)
    t.start()
    assert held.wait(5)
    threading.Timer(0.5, go.set).start()
    r = client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    t.join()
    # the cancel saw the finished job: refused, not a cancel the runner's commit undid
    assert r.status_code == 400, r.text
    assert "succeeded" in r.json()["error"]["message"]
    assert client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "succeeded"


def test_a_cancel_first_makes_the_runner_stand_down(client: TestClient) -> None:
    service, job_id = _running_job(client)
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
    with service.platform.db.transaction() as s:
        assert service._ours(s, job_id) is None  # what the worker says no longer counts
    service._record(job_id, {"event": "metrics", "step": 3, "total_steps": 9})
    job = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    assert job["status"] == "cancelled"


def test_events_added_at_once_are_numbered_once_each(client: TestClient) -> None:
    service, job_id = _running_job(client)
    errors: list[BaseException] = []

    def note(who: str) -> None:
        try:
            for i in range(15):
                service._note(job_id, f"{who} {i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=note, args=(w,)) for w in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with service.platform.db.transaction() as s:
        seqs = s.scalars(select(EventRow.seq).where(EventRow.job_id == job_id)).all()
    assert sorted(seqs) == list(range(1, 46))
