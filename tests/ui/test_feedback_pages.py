"""The feedback panel on the trace page: feedback added through the API (an end user's
thumbs through an `app` key) shows on its trace with author, source and time; a
reviewer adds thumbs, a score and a comment from the page (through the write-ahead log);
bad input is named in the panel and stores nothing; a viewer sees the panel without the
form; comments render as text. Then the same in real headless Chromium."""

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
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
VIEWER_PASSWORD = "quiet-heron-lantern-47"
HTML = {"accept": "text/html"}


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Env, str, str]]:
    """The app, an app key, and the trace id of one gateway call through it (stored)."""
    for env in make_env(tmp_path):
        env.provider()
        env.route("support")
        key, _ = env.key("widget", role="app")
        r = httpx.post(
            f"{env.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "support", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        env.app.state.platform.tracing.flush()
        yield env, key, r.headers["x-shipyard-trace-id"]


def _end_user_thumbs(env: Env, key: str, trace_id: str, comment: str) -> None:
    r = httpx.post(
        env.url + "/api/feedback",
        headers={"Authorization": f"Bearer {key}"},
        json={"trace_id": trace_id, "thumbs": "up", "comment": comment, "end_user": "u-7"},
    )
    assert r.status_code == 202, r.text
    env.app.state.platform.feedback.flush()


def _csrf(html: str) -> str:
    return html.split('"X-CSRF-Token": "', 1)[1].split('"')[0]


def test_the_panel_lists_feedback_and_a_reviewer_adds_some(traced: tuple[Env, str, str]) -> None:
    env, key, trace_id = traced
    _end_user_thumbs(env, key, trace_id, XSS)
    with httpx.Client(base_url=env.url, headers=HTML) as browser:
        assert form_login(browser, "admin@example.com", ADMIN_PASSWORD).status_code == 303
        page = browser.get(f"/traces/{trace_id}")
        assert page.status_code == 200
        assert f'hx-get="/feedback/traces/{trace_id}"' in page.text  # the trace's panel
        panel = browser.get(f"/feedback/traces/{trace_id}").text
        assert "key:widget" in panel and "end_user" in panel and "for u-7" in panel
        assert "👍 up" in panel and XSS not in panel and "&lt;script&gt;" in panel
        assert 'id="feedback-form"' in panel

        hx = {"x-csrf-token": _csrf(page.text), "hx-request": "true"}
        path = f"/feedback/traces/{trace_id}"
        bad = browser.post(path, data={"score": "lots", "comment": "x"}, headers=hx)
        assert bad.status_code == 200 and "score:" in bad.text and 'role="alert"' in bad.text
        assert 'value="lots"' in bad.text  # what was typed is kept
        empty = browser.post(path, data={}, headers=hx)
        assert "at least one of thumbs" in empty.text
        done = browser.post(
            path, data={"thumbs": "down", "score": "0.2", "comment": "made up"}, headers=hx
        )
        assert done.status_code == 200 and "Feedback added" in done.text, done.text
        assert "made up" in done.text and "👎 down" in done.text and "reviewer" in done.text
        assert "user:admin@example.com" in done.text

        plain = browser.post(
            path, data={"thumbs": "up"}, headers={"x-csrf-token": hx["x-csrf-token"]}
        )
        assert plain.status_code == 303 and plain.headers["location"] == f"/traces/{trace_id}"
        forged = browser.post(path, data={"thumbs": "up"}, headers={"hx-request": "true"})
        assert forged.status_code == 403

    items = env.admin.get("/api/feedback", params={"trace_id": trace_id}).json()["items"]
    assert sorted((i["source"], i["thumbs"], i["score"]) for i in items) == [
        ("end_user", "up", None),
        ("reviewer", "down", 0.2),
        ("reviewer", "up", None),
    ]


def test_a_viewer_sees_the_panel_without_the_form(traced: tuple[Env, str, str]) -> None:
    env, key, trace_id = traced
    _end_user_thumbs(env, key, trace_id, "lovely")
    body = {"email": "vera@example.com", "password": VIEWER_PASSWORD, "role": "viewer"}
    assert env.admin.post("/api/users", json=body).status_code == 201
    with httpx.Client(base_url=env.url, headers=HTML) as browser:
        assert browser.get(f"/feedback/traces/{trace_id}").status_code == 303  # log in first
        assert form_login(browser, "vera@example.com", VIEWER_PASSWORD).status_code == 303
        panel = browser.get(f"/feedback/traces/{trace_id}")
        assert panel.status_code == 200 and "lovely" in panel.text
        assert "feedback-form" not in panel.text
        csrf = _csrf(browser.get(f"/traces/{trace_id}").text)
        r = browser.post(
            f"/feedback/traces/{trace_id}",
            data={"thumbs": "down"},
            headers={"x-csrf-token": csrf, "hx-request": "true"},
        )
        assert r.status_code == 403


@pytest.mark.browser
def test_thumbs_down_with_a_comment_from_the_trace_page_in_chromium(
    traced: tuple[Env, str, str],
) -> None:
    from playwright.sync_api import sync_playwright

    env, key, trace_id = traced
    _end_user_thumbs(env, key, trace_id, XSS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page: Any = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(env.url + "/login")
        page.fill("input[name=email]", "admin@example.com")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(env.url + "/")

        page.goto(f"{env.url}/traces/{trace_id}")
        listed = page.locator("[data-testid=trace-feedback] tbody tr")
        listed.first.wait_for()
        assert listed.count() == 1 and "key:widget" in listed.first.inner_text()
        assert page.evaluate("window.__xss") is None  # the comment rendered as text

        page.check("#feedback-form input[name=thumbs][value=down]")
        page.fill("#feedback-form input[name=comment]", "it invented an order number")
        page.click("#feedback-form button[type=submit]")
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=trace-feedback] tbody tr').length == 2"
        )
        mine = listed.filter(has_text="it invented an order number")
        text = mine.inner_text()
        assert "down" in text and "reviewer" in text and "user:admin@example.com" in text
        assert page.url == f"{env.url}/traces/{trace_id}"  # swapped in place

        page.reload()  # stored, not just shown
        listed.first.wait_for()
        assert listed.count() == 2
        assert "it invented an order number" in page.inner_text("[data-testid=trace-feedback]")
        browser.close()
