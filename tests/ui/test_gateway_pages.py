"""The gateway's web pages in real headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_env(tmp_path: Path) -> Iterator[tuple[object, Env]]:
    from playwright.sync_api import sync_playwright

    for env in make_env(tmp_path):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(env.url + "/login")
            page.fill("input[name=email]", "admin@example.com")
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(env.url + "/")
            yield page, env
            browser.close()


def test_gateway_pages(browser_env) -> None:  # type: ignore[no-untyped-def]
    page, env = browser_env
    url = env.url

    # providers: add one through the form; the key is write-only
    page.click("nav >> text=Providers")
    page.fill("input[name=name]", "fake")
    page.select_option("select[name=kind]", "openai")
    page.fill("input[name=base_url]", env.upstream.url)
    page.fill("input[name=api_key]", "sk-typed-in-the-browser")
    page.check("input[name=allow_internal]")  # the fake upstream is on loopback
    page.click("text=Add provider")
    page.wait_for_selector("#providers td:has-text('fake')")
    assert "sk-typed-in-the-browser" not in page.content()
    page.fill("input[name=name]", "meta")
    page.uncheck("input[name=allow_internal]")
    page.fill("input[name=base_url]", "http://169.254.169.254/v1")
    page.click("text=Add provider")
    assert "metadata" in page.inner_text("#providers [role=alert]")

    # routes: add one, see the built-in local models and health
    page.click("nav >> text=Routes")
    page.fill("input[name=name]", "gpt-4o-mini")
    page.fill("input[name=model]", "gpt-4o-mini")
    page.click("text=Add route")
    page.wait_for_selector("#routes td:has-text('gpt-4o-mini')")
    assert "healthy" in page.inner_text("#routes")

    # traffic, then the overview chart and the request log
    key, key_id = env.key("ui-app")
    client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    env.app.state.platform.gateway.records.flush()
    page.click("nav >> text=Gateway")
    page.wait_for_url(url + "/gateway")
    assert page.inner_text("[data-testid=stat-requests]") == "3"
    assert page.locator("svg.bars rect").count() >= 3  # one bar per chart at least
    page.click("nav >> text=Request log")
    assert page.locator("#requests tbody tr").count() == 3
    assert "gpt-4o-mini" in page.inner_text("#requests")

    # key limits: set a budget and see the meter
    env.admin.put(f"/api/gateway/limits/key/{key_id}", json={"allowed_routes": ["gpt-4o-mini"]})
    page.click("nav >> text=Key limits")
    row = page.locator(f"tr:has-text('{key[3:15]}')")
    row.locator("input[name=budget_usd]").fill("5")
    row.locator("input[name=rpm]").fill("100")
    row.locator("text=Save").click()
    page.wait_for_selector(f"tr:has-text('{key[3:15]}') .meter")
    assert "$5.00 / month" in page.inner_text("#key-limits")
    limits = env.admin.get("/api/gateway/limits").json()
    mine = next(lim for lim in limits if lim["scope"] == f"key:{key_id}")
    assert mine["rpm"] == 100 and mine["allowed_routes"] == ["gpt-4o-mini"]  # kept
