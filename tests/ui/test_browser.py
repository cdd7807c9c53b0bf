"""End to end in real headless Chromium (Debian's, never a downloaded browser)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support import live_server

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def page(sqlite_client: TestClient) -> Iterator[tuple[object, str]]:
    from playwright.sync_api import sync_playwright

    with live_server(sqlite_client.app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page, url
        browser.close()


def login(page, url: str, password: str = ADMIN_PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=email]", "admin@example.com")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_login_create_key_and_see_it_in_the_audit_log(page) -> None:  # type: ignore[no-untyped-def]
    page, url = page
    login(page, url, "wrong-password-123")
    assert "wrong e-mail or password" in page.inner_text("[role=alert]")
    login(page, url)
    page.wait_for_url(url + "/")
    assert "Default" in page.inner_text("main h1")

    page.click("text=API keys")
    page.wait_for_url(url + "/admin/keys")
    page.fill("input[name=name]", "browser-made")
    page.select_option("select[name=role]", "developer")
    page.click("text=Create key")
    secret = page.inner_text("[data-testid=new-key]")
    assert secret.startswith("sy-")
    assert "browser-made" in page.inner_text("#keys table")

    page.reload()  # shown once: gone after a reload
    assert page.locator("[data-testid=new-key]").count() == 0
    assert secret not in page.content()

    page.click("text=Audit log")
    page.wait_for_url(url + "/admin/audit")
    rows = page.inner_text("#audit")
    assert "ui.keys_create" in rows and "ui.login" in rows and "denied" in rows
    page.fill("input[name=action]", "ui.keys_create")
    page.click("text=Filter")
    page.wait_for_function(
        "!(document.querySelector('#audit')?.innerText ?? 'ui.login').includes('ui.login')"
    )
    assert "ui.keys_create" in page.inner_text("#audit")
    assert secret not in page.content()


def test_users_page_revoke_and_logout(page) -> None:  # type: ignore[no-untyped-def]
    page, url = page
    login(page, url)
    page.wait_for_url(url + "/")

    page.click("text=Users")
    page.fill("input[name=email]", "dana@example.com")
    page.fill("input[name=password]", "short")
    page.click("button:has-text('Add')")
    assert "at least 12" in page.inner_text("#users [role=alert]")
    page.fill("input[name=password]", "Sturdy-Passphrase-42")
    page.click("button:has-text('Add')")
    page.wait_for_selector("#users td:has-text('dana@example.com')")

    page.click("text=API keys")
    page.fill("input[name=name]", "to-revoke")
    page.click("text=Create key")
    page.wait_for_selector("[data-testid=new-key]")
    page.once("dialog", lambda d: d.accept())
    page.click("tr:has-text('to-revoke') button:has-text('Revoke')")
    page.wait_for_selector("tr:has-text('to-revoke') .badge:has-text('revoked')")

    page.click("text=Log out")
    page.wait_for_url(url + "/login")
    page.goto(url + "/admin/keys")
    assert page.url.endswith("/login")


def test_workspace_switcher(page, sqlite_client: TestClient) -> None:  # type: ignore[no-untyped-def]
    page, url = page
    created = sqlite_client.post("/api/workspaces", json={"slug": "research", "name": "Research"})
    assert created.status_code == 201
    login(page, url)
    page.wait_for_url(url + "/")
    assert page.locator("#ws-switch option").count() == 2
    page.select_option("#ws-switch select", "research")
    page.wait_for_function("document.querySelector('main h1')?.innerText === 'Research'")
    page.click("text=API keys")
    assert "admin (bootstrap)" not in page.inner_text("#keys")  # keys are per workspace
