"""The closed loop's pages (/serving): a model's versions each as one flow — the dataset
version made of traces and their corrections, the validation, the promotion, the canary
on live traffic with each arm's score drawn, the automatic rollback — rendered from
what the platform stored, escaped; then in real headless Chromium, from the side menu
to the flow.

The traffic is real calls through the gateway to the scripted upstream on loopback; the
online scores are feedback on their traces (tests/serving/test_canary.py scripts them
the same way). tests/cli/test_demo.py runs the loop with a real fine-tune."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.training.outcome import exported_from
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.registry.support import model, provider_source
from tests.serving.test_canary import _score, _start, _traffic
from tests.ui.test_evaluation_pages import _session, browser_env
from tests.ui.test_tracing_pages import XSS

__all__ = ["browser_env"]  # the shared Chromium fixture, over this module's `env`
DATASET = "support-corrections"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support", {"provider": "fake", "model": "gpt-4o-mini"})
        _loop(e)
        yield e


def _loop(env: Env) -> None:
    """Traffic corrected by a reviewer, a dataset version of it, a version trained on
    it (lineage), its promotion and a canary the platform rolls back."""
    calls = _traffic(env, 6)
    for i, (trace_id, _) in enumerate(calls):
        verdict: dict[str, Any] = {"thumbs": "up"} if i % 2 else {"correction": f"fixed {i}"}
        r = env.admin.post("/api/feedback", json={"trace_id": trace_id, **verdict})
        assert r.status_code in (200, 201, 202), r.text
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()
    services["feedback"].resolve_pending()
    assert env.admin.post("/api/datasets", json={"name": DATASET}).status_code == 201
    r = env.admin.post(f"/api/datasets/{DATASET}/from-traces",
                       json={"trace_ids": [t for t, _ in calls]})  # fmt: skip
    assert r.status_code == 201 and r.json()["added"] == 6, r.text

    model(env, "support-model", provider_source("model-a"))
    r = env.admin.patch("/api/registry/models/support-model", json={"description": XSS})
    assert r.status_code == 200, r.text
    r = env.admin.post("/api/registry/models/support-model/versions", json={
        "source": provider_source("model-b"), "message": XSS,
        "lineage": {"base_model": "support-model@1",
                    "datasets": [{"name": DATASET, "version": "1"}]}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = env.admin.put("/api/registry/models/support-model/aliases/stable", json={"version": 1})
    assert r.status_code == 200, r.text
    r = env.admin.post("/api/registry/promotions", json={
        "name": "support-model", "version": 2, "environment": "staging"})  # fmt: skip
    assert r.status_code in (200, 201), r.text

    canary = _start(env)
    calls = _traffic(env, 40)
    _score(env, calls, {"model-a": 0.9, "model-b": 0.3})
    judged = env.admin.post(f"/api/serving/canaries/{canary['id']}/judge").json()
    assert judged["status"] == "rolled_back", judged


def test_the_flow_page_shows_the_loop_escaped(env: Env) -> None:
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, _):
        index = client.get("/serving")
        assert index.status_code == 200
        assert 'data-model="support-model"' in index.text
        assert 'data-status="rolled_back"' in index.text
        assert f'data-dataset="{DATASET}"' in index.text and "6 <span" in index.text
        page = client.get("/serving/models/support-model")
        assert page.status_code == 200
        assert XSS not in page.text and "&lt;script&gt;" in page.text
        v2 = page.text.split('data-version="2"', 1)[1].split('data-version="1"', 1)[0]
        states = {
            step: v2.split(f'data-step="{step}" data-state="', 1)[1].split('"', 1)[0]
            for step in ("data", "training", "validation", "promotion", "canary")
        }
        assert states["data"] == "done" and states["canary"] == "failed", states
        assert states["training"] == "none" and states["validation"] == "none", states
        assert states["promotion"] in ("done", "running"), states
        assert f'href="/datasets/{DATASET}"' in v2 and "from support-model@1" in v2
        assert 'data-promotion="staging"' in v2
        assert "svg" in v2 and 'data-bar="stable v1"' in v2 and 'data-bar="canary v2"' in v2
        assert "below the stable arm" in v2  # the platform's reason, with its interval
        assert client.get("/serving/models/nope").status_code == 404
    r = httpx.get(f"{env.url}/serving", headers={"accept": "text/html"})
    assert r.status_code in (302, 303, 401)  # a stranger sees nothing


def test_exported_files_link_their_dataset_version(env: Env) -> None:
    """The lineage link a fine-tune records for its training file: only a dataset
    version of the job's workspace, and only when the file holds that version's export."""
    from sqlalchemy import select

    from shipyard.evaluation.tables import DatasetRow

    def exported(fmt: str) -> bytes:
        r = env.admin.get(f"/api/datasets/{DATASET}/export", params={"version": 1, "format": fmt})
        assert r.status_code == 200, r.text
        return r.content

    chat, pairs = exported("openai"), exported("dpo")
    assert chat
    with env.app.state.platform.db.transaction() as s:
        ws = s.scalars(select(DatasetRow.workspace_id).where(DatasetRow.name == DATASET)).one()
        linked = [{"name": DATASET, "version": "1"}]
        assert exported_from(s, ws, f"{DATASET}-v1-openai.jsonl", chat) == linked
        assert exported_from(s, ws, f"{DATASET}-v1-dpo.jsonl", pairs) == linked
        # named like the export, holding something else (or the other format's lines)
        assert exported_from(s, ws, f"{DATASET}-v1-openai.jsonl", chat[:-1]) == []
        assert exported_from(s, ws, f"{DATASET}-v1-openai.jsonl", b'{"messages": []}\n') == []
        if pairs != chat:
            assert exported_from(s, ws, f"{DATASET}-v1-dpo.jsonl", chat) == []
        assert exported_from(s, ws, f"{DATASET}-v2-openai.jsonl", chat) == []  # no such version
        assert exported_from(s, ws, f"{DATASET}.jsonl", chat) == []
        assert exported_from(s, "ws_other", f"{DATASET}-v1-openai.jsonl", chat) == []


@pytest.mark.browser
def test_the_loop_in_the_browser(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    page.get_by_role("link", name="Closed loop").click()
    page.wait_for_url(env.url + "/serving")
    assert "rolled_back" in page.locator("#canaries").inner_text()
    page.locator("#models").get_by_role("link", name="support-model").click()
    page.wait_for_url(env.url + "/serving/models/support-model")
    v2 = page.locator("[data-version='2']")
    v2.locator("svg.bars [data-bar='canary v2']").wait_for()
    assert v2.locator("[data-step=canary]").get_attribute("data-state") == "failed"
    assert v2.locator("[data-step=data]").get_attribute("data-state") == "done"
    stable = float(v2.locator("[data-bar='stable v1']").get_attribute("data-mean") or "nan")
    canary = float(v2.locator("[data-bar='canary v2']").get_attribute("data-mean") or "nan")
    assert canary < stable - 0.1
    v2.get_by_role("link", name=f"{DATASET} v1").click()
    page.wait_for_url(env.url + f"/datasets/{DATASET}")
