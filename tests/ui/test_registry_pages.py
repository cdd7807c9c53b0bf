"""The registry pages in real headless Chromium: the catalog browser's filters, a model's
versions, promotion through the page (dev at once; production pending until a second
approver approves it on the promotions page: four eyes), rollback, the diff between two
versions and the lineage graph; hostile names and descriptions render as text. Then over
plain HTTP: a viewer reads and is refused every change; a stranger is sent to log in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.registry.support import PASSWORD, model, provider_source
from tests.registry.test_catalog import CATALOG, YAML
from tests.support import form_login
from tests.ui.test_tracing_pages import CHROMIUM, XSS


@pytest.fixture
def browser_env(tmp_path: Path) -> Iterator[tuple[Any, Any, Env]]:
    from playwright.sync_api import sync_playwright

    for env in make_env(tmp_path):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield browser, login(browser, env, "admin@example.com", ADMIN_PASSWORD), env
            browser.close()


def login(browser: Any, env: Env, email: str, password: str) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.goto(env.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(env.url + "/")
    return page


def seed(env: Env) -> None:
    env.provider()
    r = env.admin.post("/api/registry/catalog/import", content=CATALOG, headers=YAML)
    assert r.status_code == 200, r.text
    hostile = {"name": "hostile", "description": XSS, "provider": "fake", "model": XSS}
    assert env.admin.put("/api/registry/catalog/hostile", json=hostile).status_code == 200
    model(env, "support", provider_source("model-one"), provider_source("model-two"))
    r = env.admin.patch("/api/registry/models/support", json={"description": XSS})
    assert r.status_code == 200


def alias_cell(page: Any, alias: str) -> str:
    return str(page.inner_text(f"#aliases tr[data-alias={alias}] [data-testid=alias-version]"))


def test_registry_pages_in_the_browser(browser_env: tuple[Any, Any, Env]) -> None:
    browser, page, env = browser_env
    seed(env)
    url = env.url

    # the catalog: filters narrow it, cheapest first
    page.click("nav >> text=Catalog")
    page.wait_for_url(url + "/registry/catalog")
    entries = page.locator("#catalog tbody tr[data-entry]")
    assert entries.count() == 6  # three imported, one hostile, two built in
    page.fill("#catalog-filters input[name=capabilities]", "tools")
    page.fill("#catalog-filters input[name=min_context]", "32000")
    page.click("#catalog-filters button[type=submit]")
    page.wait_for_url("**/registry/catalog?*")
    names = [entries.nth(i).get_attribute("data-entry") for i in range(entries.count())]
    assert names == ["small-tools", "big-tools"]
    page.fill("#catalog-filters input[name=min_context]", "lots")
    page.click("#catalog-filters button[type=submit]")
    assert "filter.min_context" in page.inner_text("[role=alert]")

    # a model: promote v1 to dev (no second person needed), then to production
    page.click("nav >> text=Models")
    page.wait_for_url(url + "/registry/models")
    page.click("#assets >> text=support")
    page.wait_for_url(url + "/registry/models/support")
    v1 = "#versions tr[data-version='1']"
    page.select_option(f"{v1} select[name=environment]", "dev")
    page.click(f"{v1} button[type=submit]")
    page.wait_for_selector("[role=status]")
    assert "approved" in page.inner_text("[role=status]")
    assert alias_cell(page, "dev") == "v1"
    page.select_option(f"{v1} select[name=environment]", "production")
    page.fill(f"{v1} input[name=note]", "ship it")
    page.click(f"{v1} button[type=submit]")
    page.wait_for_selector("[role=status]:has-text('to production')")
    assert "pending" in page.inner_text("[role=status]")
    assert alias_cell(page, "production") == "–"

    # the requester sees no approve button for their own request
    page.click("nav >> text=Promotions")
    page.wait_for_url(url + "/registry/promotions")
    mine = "#promotions tr[data-promotion] >> nth=0"
    assert "another approver must approve" in page.inner_text(mine)
    assert page.locator(f"{mine} >> button:text-is('Approve')").count() == 0

    # a second approver approves on the page: production moves
    user = {"email": "bo@example.com", "password": PASSWORD, "role": "admin"}
    assert env.admin.post("/api/users", json=user).status_code == 201
    bo = login(browser, env, "bo@example.com", PASSWORD)
    bo.goto(url + "/registry/promotions")
    bo.fill("#promotions tr[data-promotion] >> nth=0 >> input[name=note]", "lgtm")
    bo.click("#promotions tr[data-promotion] >> nth=0 >> button:text-is('Approve')")
    bo.wait_for_selector("[role=status]")
    assert "approved" in bo.inner_text("#promotions tr[data-promotion] >> nth=0")
    page.goto(url + "/registry/models/support")
    assert alias_cell(page, "production") == "v1"

    # nothing to roll back to yet: said on the page
    page.on("dialog", lambda d: d.accept())
    page.click("#aliases tr[data-alias=production] >> text=Roll back")
    page.wait_for_selector("[role=alert]")
    assert "no earlier version" in page.inner_text("[role=alert]")
    # v2 to production, approved by the other admin, then rolled back in one click
    page.select_option("#versions tr[data-version='2'] select[name=environment]", "production")
    page.click("#versions tr[data-version='2'] button[type=submit]")
    page.wait_for_selector("[role=status]:has-text('v2 to production')")
    bo.goto(url + "/registry/promotions")
    bo.click("#promotions tr[data-promotion] >> nth=0 >> button:text-is('Approve')")
    bo.wait_for_selector("[role=status]:has-text('approved')")
    page.goto(url + "/registry/models/support")
    assert alias_cell(page, "production") == "v2"
    page.click("#aliases tr[data-alias=production] >> text=Roll back")
    page.wait_for_selector("[role=status]:has-text('rolled back')")
    assert alias_cell(page, "production") == "v1"
    assert "rollback" in page.inner_text("#history")

    # the diff between the two versions, and the lineage graph
    page.select_option("#diff select[name=a]", "1")
    page.select_option("#diff select[name=b]", "2")
    page.click("#diff button[type=submit]")
    page.wait_for_selector("[data-testid=diff]")
    diff = page.inner_text("[data-testid=diff]")
    assert '-    "model": "model-one"' in diff and '+    "model": "model-two"' in diff
    assert page.locator("#lineage svg g[data-node='model:support@2']").count() == 1

    # hostile input is text, never markup
    page.goto(url + "/registry/catalog")
    assert "<script>" in page.inner_text("#catalog tr[data-entry=hostile]")
    page.goto(url + "/registry/models")
    assert "<script>" in page.inner_text("#assets")
    assert page.evaluate("window.__xss") is None

    # a prompt's page: its versions and the diff of their templates
    page.goto(f"{url}/registry/releases")
    assert "No releases yet" in page.inner_text("#assets")
    for company in ("Acme", "Beta"):
        body = {
            "template": {"type": "text", "text": f"You answer for {company}: {{{{ question }}}}"},
            "message": f"for {company}",
        }
        r = env.admin.post("/api/registry/prompts/support-answer/versions", json=body)
        assert r.status_code == 201, r.text
    page.click("nav >> text=Prompts")
    page.wait_for_url(url + "/registry/prompts")
    page.click("#assets >> text=support-answer")
    page.wait_for_url(url + "/registry/prompts/support-answer")
    assert page.locator("#versions tr[data-version]").count() == 2
    page.click("#diff button[type=submit]")
    page.wait_for_selector("[data-testid=diff]")
    diff = page.inner_text("[data-testid=diff]")
    assert "-You answer for Acme: {{ question }}" in diff
    assert "+You answer for Beta: {{ question }}" in diff


def test_viewers_read_and_strangers_log_in(tmp_path: Path) -> None:
    for env in make_env(tmp_path):
        seed(env)
        html = {"accept": "text/html"}
        with httpx.Client(base_url=env.url, headers=html) as stranger:
            for path in ("/registry/catalog", "/registry/models", "/registry/promotions"):
                r = stranger.get(path)
                assert r.status_code == 303 and r.headers["location"] == "/login", path
        user = {"email": "vi@example.com", "password": PASSWORD, "role": "viewer"}
        assert env.admin.post("/api/users", json=user).status_code == 201
        with httpx.Client(base_url=env.url, headers=html) as viewer:
            assert form_login(viewer, "vi@example.com", PASSWORD).status_code == 303
            page = viewer.get("/registry/models/support")
            assert page.status_code == 200 and "model-one" in page.text
            assert "Promote</button>" not in page.text and "Roll back" not in page.text
            csrf = page.text.split('"X-CSRF-Token": "', 1)[1].split('"')[0]
            hx = {"x-csrf-token": csrf, "hx-request": "true"}
            r = viewer.post(
                "/registry/models/support/promote",
                data={"version": "1", "environment": "dev"},
                headers=hx,
            )
            assert r.status_code == 403
            r = viewer.post("/registry/models/support/aliases/dev/rollback", headers=hx)
            assert r.status_code == 403
            r = viewer.post("/registry/promotions/x/approve", headers=hx)
            assert r.status_code == 403
            assert viewer.get("/registry/nonsense").status_code == 400
        assert env.admin.get("/api/registry/models/support").json()["aliases"] == {}
