"""The pipeline pages: the list with a push form (a bad spec refused on the page naming
the step, nothing stored), a pipeline's versions, diff, step graph and playground (each
step's input, output and timing, a link to the trace), hostile text escaped, a viewer
reading only; then in real headless Chromium: push, open, run, push again, diff."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env
from tests.registry.support import PASSWORD
from tests.ui.test_evaluation_pages import _session, _user, browser_env, env
from tests.ui.test_tracing_pages import XSS

__all__ = ["browser_env", "env"]

SPEC = """inputs:
  question: {type: string}
steps:
  - id: ask
    type: model
    route: support
    messages: $inputs.question
  - id: out
    type: output
    value: {answer: $steps.ask}
"""


def _push(env: Env, spec: str = SPEC, message: str = "first") -> None:
    r = env.admin.post("/api/pipelines/helper/versions", json={"yaml": spec, "message": message})
    assert r.status_code == 201, r.text


def test_pages_render_escape_and_refuse(env: Env) -> None:
    _push(env, message=XSS)
    _push(env, SPEC.replace("answer:", "reply:"), "second")
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        listing = client.get("/pipelines")
        assert listing.status_code == 200 and 'data-pipeline="helper"' in listing.text
        bad = client.post(
            "/pipelines",
            data={"name": "loop", "spec": "steps:\n  - {id: a, type: model, messages: $steps.a}\n"},
            headers=hx,
        )
        assert bad.status_code == 400 and "step &#39;a&#39;: reads its own output" in bad.text
        assert env.admin.get("/api/registry/pipelines/loop").status_code == 404
        page = client.get("/pipelines/helper")
        assert page.status_code == 200 and 'data-version="2"' in page.text
        assert XSS not in page.text and "&lt;" in page.text
        assert 'data-step="ask"' in page.text and '<svg id="graph"' in page.text
        diff = client.get("/pipelines/helper", params={"a": 1, "b": 2})
        assert diff.status_code == 200 and "reply:" in diff.text.split('id="diff"')[1]
        ran = client.post(
            "/pipelines/helper/run", data={"ref": "1", "in.question": XSS}, headers=hx
        )
        assert ran.status_code == 200, ran.text
        assert 'data-step="ask" data-status="ok"' in ran.text and "/traces/" in ran.text
        assert XSS not in ran.text
        missing = client.post("/pipelines/helper/run", data={"ref": "latest"}, headers=hx)
        assert missing.status_code == 400 and "inputs.question: is required" in missing.text
        assert client.get("/pipelines/nope").status_code == 404
        assert client.get("/pipelines/helper", params={"v": 9}).status_code == 400
    # an app key may invoke, but the playground page shows the spec: it may not read it
    app_key, _ = env.key("pipe-app-ui", role="app")
    r = httpx.post(f"{env.url}/pipelines/helper/run", data={"in.question": "q"},
                   headers={"Authorization": f"Bearer {app_key}"})  # fmt: skip
    assert r.status_code == 403
    _user(env, "pv@example.com", "viewer")
    with _session(env, "pv@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get("/pipelines")
        assert page.status_code == 200 and "Push a version" not in page.text
        detail = viewer.get("/pipelines/helper")
        assert detail.status_code == 200 and "Playground" not in detail.text
        assert (
            viewer.post("/pipelines", data={"name": "x", "spec": SPEC}, headers=hx).status_code
            == 403
        )
        assert (
            viewer.post("/pipelines/helper/run", data={"in.question": "q"}, headers=hx).status_code
            == 403
        )


@pytest.mark.browser
def test_push_run_and_diff_in_the_browser(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    page.goto(env.url + "/pipelines")
    page.fill("input[name=name]", "helper")
    page.fill("textarea[name=spec]", SPEC)
    page.get_by_role("button", name="Push").click()
    page.get_by_role("status").wait_for()
    assert "Pushed helper@v1" in page.get_by_role("status").inner_text()
    page.get_by_role("link", name="helper").click()
    page.locator("#graph [data-step=ask]").wait_for()
    page.fill("textarea[name='in.question']", "What time is it?")
    page.get_by_role("button", name="Run").click()
    page.locator("#run-steps").wait_for()
    assert page.locator("#run-steps tbody tr").count() == 2
    assert "echo: What time is it?" in page.locator("#run-output").inner_text()
    page.get_by_role("link", name="trace").first.wait_for()
    _push(env, SPEC.replace("answer:", "reply:"), "second")
    page.goto(env.url + "/pipelines/helper")
    page.get_by_role("button", name="Compare").click()
    page.locator("#diff").wait_for()
    assert "+    reply:" in page.locator("#diff").inner_text()
