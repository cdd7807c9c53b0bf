"""Cookie sessions without a browser: CSRF, throttling, logout."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support import form_login


def _login(client: TestClient, password: str = ADMIN_PASSWORD) -> TestClient:
    browser = TestClient(client.app, base_url="http://localhost", follow_redirects=False)
    r = form_login(browser, "admin@example.com", password)
    assert r.status_code in (303, 401, 429), r.text
    return browser


def test_cookie_state_changes_need_the_csrf_token(sqlite_client: TestClient) -> None:
    browser = _login(sqlite_client)
    assert browser.get("/api/me").json()["kind"] == "user"
    no_token = browser.post("/api/keys", json={"name": "x"})
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["detail"]
    page = browser.get("/admin/keys").text
    token = page.split('"X-CSRF-Token": "', 1)[1].split('"', 1)[0]
    ok = browser.post("/api/keys", json={"name": "x"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 201
    assert browser.post("/logout", headers={"X-CSRF-Token": token}).status_code == 204
    assert browser.get("/api/me").status_code == 401


def test_repeated_failed_logins_are_slowed(sqlite_client: TestClient) -> None:
    def attempt(password: str) -> int:
        browser = TestClient(sqlite_client.app, base_url="http://localhost", follow_redirects=False)
        r = form_login(browser, "admin@example.com", password)
        assert r.status_code != 429 or int(r.headers["Retry-After"]) >= 1
        return r.status_code

    statuses = [attempt("wrong-password-123") for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    # the same client waits even with the right password: it is that client's delay
    assert attempt(ADMIN_PASSWORD) == 429


def test_metrics_need_a_key_and_count_requests(sqlite_client: TestClient) -> None:
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost")
    assert anonymous.get("/metrics").status_code == 401
    sqlite_client.get("/api/me")
    text = sqlite_client.get("/metrics").text
    assert 'shipyard_http_requests_total{method="GET",route="/api/me",status="200"}' in text
    assert "process_resident_memory_bytes" in text
