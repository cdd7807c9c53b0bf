"""The quality-gate page: per environment, the evaluation gate set through the
registry's policy; a bad threshold named and nothing stored; a viewer reads and cannot
change it; in Chromium, a gate set on production that then refuses a promotion."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.evaluation.gate_pages import gate_from_form
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env
from tests.registry.support import PASSWORD
from tests.ui.test_evaluation_pages import _dataset, _session, _user, browser_env, env

__all__ = ["browser_env", "env"]  # the fixtures, shared with the evaluation pages


def test_a_form_becomes_the_gate() -> None:
    gate = gate_from_form(
        {
            "dataset": "capitals",
            "dataset_version": "2",
            "thresholds": "exact_match >= 0.8\n\nlatency <= 900\n",
            "max_error_rate": "0.1",
            "nw_scorer": "exact_match",
            "nw_margin": "0.02",
        }
    )
    assert gate == {
        "dataset": "capitals",
        "dataset_version": 2,
        "scorers": {"exact_match": {"min": 0.8}, "latency": {"max": 900.0}},
        "max_error_rate": 0.1,
        "not_worse_than": {"scorer": "exact_match", "environment": "production", "margin": 0.02},
    }
    assert gate_from_form({"dataset": ""}) is None
    for form, named in [
        ({"dataset": "d", "thresholds": "exact_match > 1"}, "thresholds line 1"),
        ({"dataset": "d", "thresholds": "x >= high"}, "thresholds line 1"),
        ({"dataset": "d", "dataset_version": "two"}, "dataset_version"),
    ]:
        with pytest.raises(InvalidInput, match=named):
            gate_from_form(form)


def test_the_page_sets_and_removes_a_gate_and_a_viewer_cannot(env: Env) -> None:
    _dataset(env)
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        page = client.get("/evals/gates")
        assert page.status_code == 200 and 'data-environment="production"' in page.text
        r = client.post(
            "/evals/gates/production",
            data={"dataset": "capitals", "thresholds": "exact_match >= 0.9", "four_eyes": "on"},
            headers=hx,
        )
        assert r.status_code == 200 and "the evaluation gate is set" in r.text
        policy = {p["environment"]: p for p in env.admin.get("/api/registry/policies").json()}
        assert policy["production"]["gates"]["evaluation"]["scorers"] == {
            "exact_match": {"min": 0.9}
        }
        assert policy["production"]["four_eyes"] is True

        bad = client.post(
            "/evals/gates/staging", data={"dataset": "capitals", "max_error_rate": "5"}, headers=hx
        )
        assert bad.status_code == 400 and "max_error_rate" in bad.text
        bad = client.post("/evals/gates/staging", data={"dataset": "nope<b>"}, headers=hx)
        assert bad.status_code == 400 and "<b>" not in bad.text
        policy = {p["environment"]: p for p in env.admin.get("/api/registry/policies").json()}
        assert "evaluation" not in policy["staging"]["gates"]  # nothing stored

        r = client.post("/evals/gates/production", data={"dataset": ""}, headers=hx)
        assert "the evaluation gate is removed" in r.text
    _user(env, "vi@example.com", "viewer")
    with _session(env, "vi@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get("/evals/gates")
        assert page.status_code == 200 and "Save production" not in page.text
        r = viewer.post("/evals/gates/production", data={"dataset": "capitals"}, headers=hx)
        assert r.status_code == 403


@pytest.mark.browser
def test_a_gate_set_in_the_browser_refuses_a_promotion(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    _dataset(env)
    body = {
        "template": {"type": "chat", "messages": [{"role": "user", "content": "{{ input }}"}]},
        "variables": {"input": {"type": "string"}},
        "model": "support",
    }
    assert env.admin.post("/api/registry/prompts/capital/versions", json=body).status_code == 201
    page.goto(env.url + "/evals/gates")
    card = page.locator('[data-environment="production"]')
    card.locator("select[name=dataset]").select_option("capitals")
    card.locator("textarea[name=thresholds]").fill("exact_match >= 0.9")
    card.locator("input[name=four_eyes]").uncheck()
    card.get_by_role("button", name="Save production").click()
    page.get_by_role("status").wait_for()
    assert "the evaluation gate is set" in page.get_by_role("status").inner_text()
    shown = page.locator('[data-environment="production"] [data-testid=gate-json]').inner_text()
    assert '"exact_match"' in shown and "0.9" in shown

    r = env.admin.post(
        "/api/registry/promotions",
        json={"kind": "prompt", "name": "capital", "version": 1, "environment": "production"},
    )
    assert r.status_code == 409 and "no completed evaluation run" in r.json()["detail"]
