"""The review pages: the queue list with progress and agreement, the workspace showing
a queue's next item (the trace's input and output) with a form; a review through the
form is stored as feedback and the next item comes; bad input is named and marks
nothing; a viewer is refused. Then two items reviewed in real headless Chromium with
the keyboard shortcuts, the progress bar moving."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.support import form_login

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = "<script>window.__xss=1</script>"
HTML = {"accept": "text/html"}
VIEWER_PASSWORD = "quiet-heron-lantern-47"


@pytest.fixture
def queued(tmp_path: Path) -> Iterator[tuple[Env, str, list[str]]]:
    """The app, a queue of two gateway traces (stored), their trace ids."""
    for env in make_env(tmp_path):
        env.provider()
        env.route("support")
        traces = []
        for text in ("where is my order?", XSS):
            r = env.admin.post(
                "/v1/chat/completions",
                json={"model": "support", "messages": [{"role": "user", "content": text}]},
            )
            assert r.status_code == 200, r.text
            traces.append(r.headers["x-shipyard-trace-id"])
        env.app.state.platform.services["tracing"].flush()
        r = env.admin.post("/api/feedback/queues", json={"name": "support review"})
        assert r.status_code == 201, r.text
        queue_id = r.json()["id"]
        r = env.admin.post(f"/api/feedback/queues/{queue_id}/items", json={"trace_ids": traces})
        assert r.json() == {"added": 2}
        yield env, queue_id, traces


def _csrf(html: str) -> str:
    return html.split('"X-CSRF-Token": "', 1)[1].split('"')[0]


def _feedback(env: Env, trace_id: str) -> list[tuple[Any, ...]]:
    env.app.state.platform.services["feedback"].flush()
    items = env.admin.get("/api/feedback", params={"trace_id": trace_id}).json()["items"]
    return [(i["source"], i["thumbs"], i["score"], i["correction"]) for i in items]


def test_the_workspace_reviews_through_the_form(queued: tuple[Env, str, list[str]]) -> None:
    env, queue_id, (first, second) = queued
    with httpx.Client(base_url=env.url, headers=HTML) as browser:
        assert form_login(browser, "admin@example.com", ADMIN_PASSWORD).status_code == 303
        listing = browser.get("/feedback/queues")
        assert listing.status_code == 200 and "support review" in listing.text
        assert "0/2" in listing.text and 'href="/feedback/queues"' in listing.text  # the nav
        page = browser.get(f"/feedback/queues/{queue_id}/review")
        assert (
            page.status_code == 200 and f'hx-post="/feedback/queues/{queue_id}/next"' in page.text
        )
        hx = {"x-csrf-token": _csrf(page.text), "hx-request": "true"}

        item = browser.post(f"/feedback/queues/{queue_id}/next", headers=hx).text
        assert first in item and "where is my order?" in item and "0/2" in item
        item_id = item.split('data-item="', 1)[1].split('"')[0]
        path = f"/feedback/queues/{queue_id}/items/{item_id}/review"
        bad = browser.post(path, data={"score": "lots"}, headers=hx)
        assert bad.status_code == 200 and 'role="alert"' in bad.text and "score" in bad.text
        assert 'value="lots"' in bad.text and item_id in bad.text  # the same item, kept
        empty = browser.post(path, data={}, headers=hx)
        assert "at least one of" in empty.text

        done = browser.post(
            path,
            data={"thumbs": "down", "score": "2", "correction": "It ships Monday."},
            headers=hx,
        )
        assert done.status_code == 200 and "1/2" in done.text
        assert second in done.text and XSS not in done.text and "&lt;script&gt;" in done.text
        forged = browser.post(path, data={"thumbs": "up"}, headers={"hx-request": "true"})
        assert forged.status_code == 403
    assert _feedback(env, first) == [("reviewer", "down", 2.0, "It ships Monday.")]


def test_a_viewer_is_refused_the_review_pages(queued: tuple[Env, str, list[str]]) -> None:
    env, queue_id, _ = queued
    body = {"email": "vera@example.com", "password": VIEWER_PASSWORD, "role": "viewer"}
    assert env.admin.post("/api/users", json=body).status_code == 201
    with httpx.Client(base_url=env.url, headers=HTML) as browser:
        assert form_login(browser, "vera@example.com", VIEWER_PASSWORD).status_code == 303
        assert browser.get("/feedback/queues").status_code == 403
        assert browser.get(f"/feedback/queues/{queue_id}/review").status_code == 403
        assert 'href="/feedback/queues"' not in browser.get("/").text


def _settled(page: Any, progress: str) -> None:
    """Wait until the item swapped in shows `progress` and htmx has bound its form."""
    page.wait_for_function(
        "document.querySelector('[data-testid=review-progress] .progress-text')"
        f"?.textContent == '{progress}'"
        " && !document.querySelector('#review-item')"
        "?.matches('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


@pytest.mark.browser
def test_two_items_reviewed_with_the_keyboard_in_chromium(
    queued: tuple[Env, str, list[str]],
) -> None:
    from playwright.sync_api import sync_playwright

    env, queue_id, (first, second) = queued
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page: Any = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(env.url + "/login")
        page.fill("input[name=email]", "admin@example.com")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(env.url + "/")

        page.goto(f"{env.url}/feedback/queues/{queue_id}/review")
        page.locator("[data-testid=review-input]").wait_for()
        assert "where is my order?" in page.inner_text("[data-testid=review-input]")
        assert page.inner_text("[data-testid=review-progress] .progress-text") == "0/2"

        page.keyboard.press("u")
        page.keyboard.press("4")
        page.keyboard.press("c")  # the correction field takes what is typed next
        page.keyboard.type("Sent on Monday, n and j")
        page.keyboard.press("Escape")
        page.keyboard.press("n")
        _settled(page, "1/2")
        assert page.evaluate("window.__xss") is None  # the second trace's input as text
        assert XSS in page.inner_text("[data-testid=review-input]")

        page.keyboard.press("d")
        page.keyboard.press("2")
        page.keyboard.press("j")
        _settled(page, "2/2")
        page.locator("[data-testid=review-empty]").wait_for()
        assert page.evaluate("document.querySelector('progress').value") == 2

        page.goto(env.url + "/feedback/queues")
        assert "2/2" in page.inner_text("[data-testid=review-queues]")
        browser.close()
    assert _feedback(env, first) == [("reviewer", "up", 4.0, "Sent on Monday, n and j")]
    assert _feedback(env, second) == [("reviewer", "down", 2.0, None)]
