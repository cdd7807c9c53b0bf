"""The online evaluation page: rules listed with what they scored; add one (a bad
configuration named, nothing stored), run it now, pause, delete; a viewer reads only;
in Chromium, a rule added from the form scores a live trace."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env
from tests.registry.support import PASSWORD
from tests.ui.test_evaluation_pages import _session, _user, browser_env, env

__all__ = ["browser_env", "env"]  # the fixtures, shared with the evaluation pages


def _chat(env: Env) -> str:
    r = httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {env.owner_key}"},
        json={"model": "support", "messages": [{"role": "user", "content": "<b>hi</b>"}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-shipyard-trace-id"]


def test_add_run_pause_and_delete_a_rule(env: Env) -> None:
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        assert "No online rules yet" in client.get("/evals/online").text
        bad = client.post(
            "/evals/online",
            data={"name": "q", "scorer": ["regex"], "config.regex": '{"pattern": "("}'},
            headers=hx,
        )
        assert bad.status_code == 400 and "scorers.0.config" in bad.text
        form = {"name": "q", "scorer": ["contains"], "config.contains": "{nope"}
        bad = client.post("/evals/online", data=form, headers=hx)
        assert bad.status_code == 400 and "config.contains: not JSON" in bad.text
        assert env.admin.get("/api/evals/online").json() == []
        r = client.post(
            "/evals/online",
            data={
                "name": "q",
                "route": "support",
                "sample_rate": "1",
                "scorer": ["contains"],
                "config.contains": '{"value": "echo"}',
            },  # fmt: skip
            headers=hx,
        )
        assert r.status_code == 200 and "Online rule q added" in r.text
        _chat(env)
        env.app.state.platform.services["tracing"].flush()
        r = client.post("/evals/online/q/run", headers=hx)
        assert "q: 1 traces scored" in r.text
        assert client.post("/evals/online/q/pause", headers=hx).status_code == 200
        assert env.admin.get("/api/evals/online/q").json()["enabled"] is False
        assert "paused" in client.get("/evals/online").text
        bad = client.post("/evals/online/q/explode", headers=hx)
        assert bad.status_code == 400
    _user(env, "vi@example.com", "viewer")
    with _session(env, "vi@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get("/evals/online")
        assert (
            page.status_code == 200 and 'data-rule="q"' in page.text and "Add rule" not in page.text
        )
        assert viewer.post("/evals/online/q/delete", headers=hx).status_code == 403
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        assert "q: deleted" in client.post("/evals/online/q/delete", headers=hx).text


@pytest.mark.browser
def test_a_rule_added_in_the_browser_scores_a_trace(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    page.goto(env.url + "/evals/online")
    page.fill("input[name=name]", "polite")
    page.fill("input[name=route]", "support")
    page.fill("input[name=sample_rate]", "1")
    page.check("input[name=scorer][value=contains]")
    page.fill("input[name='config.contains']", '{"value": "echo"}')
    page.get_by_role("button", name="Add rule").click()
    page.get_by_role("status").wait_for()
    assert "Online rule polite added" in page.get_by_role("status").inner_text()
    trace = _chat(env)
    env.app.state.platform.services["tracing"].flush()
    page.locator('[data-rule="polite"]').get_by_role("button", name="Run").click()
    scored = "document.querySelector('[data-rule=polite] [data-testid=scored]')"
    page.wait_for_function(f"() => {scored}?.textContent === '1'")
    env.app.state.platform.services["feedback"].flush()
    got = env.admin.get("/api/feedback", params={"trace_id": trace}).json()["items"]
    assert [(f["name"], f["score"]) for f in got] == [("polite/contains", 1.0)]
