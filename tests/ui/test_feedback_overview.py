"""The feedback overview: charts of mean score, thumbs-up rate and count over time per
route (or model, prompt, name, source), and the newest pieces escaped with links to
their traces; a viewer reads it, an app key cannot; in Chromium, the charts draw the
routes' lines."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env
from tests.ui.test_evaluation_pages import _session, browser_env, env

__all__ = ["browser_env", "env"]  # the fixtures, shared with the evaluation pages


def _feedback(env: Env) -> list[str]:
    env.route("other")
    traces = []
    for model in ("support", "support", "other"):
        r = httpx.post(
            f"{env.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {env.owner_key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        traces.append(r.headers["x-shipyard-trace-id"])
    body = [
        {"trace_id": traces[0], "thumbs": "up", "score": 0.9},
        {"trace_id": traces[1], "thumbs": "down", "score": 0.2, "comment": "<script>x</script>"},
        {"trace_id": traces[2], "thumbs": "up", "score": 1.0},
    ]
    assert env.admin.post("/api/feedback/batch", json=body).status_code == 202
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()
    services["feedback"].resolve_pending()
    return traces


def test_the_overview_charts_and_lists_feedback(env: Env) -> None:
    traces = _feedback(env)
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, _):
        page = client.get("/feedback", params={"window": "1h", "by": "route"})
        assert page.status_code == 200
        html = page.text
        for slug in ("score", "thumbs", "count"):
            assert f'data-chart="{slug}"' in html
        assert "support" in html and "other" in html
        assert "support · " in html and ": 0.55" in html  # mean score of support's bucket
        assert "<script>x</script>" not in html and "&lt;script&gt;" in html
        assert f'href="/traces/{traces[0]}"' in html
        assert client.get("/feedback", params={"by": "nope"}).status_code == 422
        only = client.get("/feedback", params={"source": "evaluation"}).text
        assert "No feedback in this window" in only
    key, _ = env.key("widget", role="app")
    r = httpx.get(f"{env.url}/feedback", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403


@pytest.mark.browser
def test_the_overview_draws_a_line_per_route(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    _feedback(env)
    page.goto(env.url + "/feedback?window=1h")
    chart = page.locator('svg[data-chart="score"]')
    chart.wait_for()
    assert chart.locator("circle.point").count() == 2  # one bucket, two routes
    legend = page.locator(".legend").first.inner_text()
    assert "support" in legend and "other" in legend
    page.select_option("select[name=by]", "source")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**by=source**")
    assert "reviewer" in page.locator(".legend").first.inner_text()
