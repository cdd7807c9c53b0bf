"""Cookie sessions without a browser: CSRF, throttling, logout."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD


def _login(client: TestClient, password: str = ADMIN_PASSWORD) -> TestClient:
    browser = TestClient(client.app, base_url="http://localhost", follow_redirects=False)
    r = browser.post("/login", data={"email": "admin@example.com", "password": password})
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


def test_repeated_failed_logins_are_throttled(sqlite_client: TestClient) -> None:
    for _ in range(10):
        r = _login(sqlite_client, "wrong-password-123").post(
            "/login", data={"email": "admin@example.com", "password": "wrong-password-123"}
        )
    assert r.status_code == 429 and "Retry-After" in r.headers
    # even the right password waits until the window passes
    right = TestClient(sqlite_client.app, base_url="http://localhost", follow_redirects=False)
    r = right.post("/login", data={"email": "admin@example.com", "password": ADMIN_PASSWORD})
    assert r.status_code == 429


def test_metrics_need_a_key_and_count_requests(sqlite_client: TestClient) -> None:
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost")
    assert anonymous.get("/metrics").status_code == 401
    sqlite_client.get("/api/me")
    text = sqlite_client.get("/metrics").text
    assert 'shipyard_http_requests_total{method="GET",route="/api/me",status="200"}' in text
    assert "process_resident_memory_bytes" in text
