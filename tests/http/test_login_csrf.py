"""Login CSRF: a form on another site posting to /login is refused, whatever it sends."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from shipyard.http.csrf import LOGIN_COOKIE
from tests.conftest import ADMIN_PASSWORD

CREDENTIALS = {"email": "admin@example.com", "password": ADMIN_PASSWORD}


def browser(client: TestClient) -> tuple[TestClient, str]:
    """A fresh browser that loaded the login page: its cookie and the form's token."""
    b = TestClient(client.app, base_url="http://localhost", follow_redirects=False)
    page = b.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert b.cookies.get(LOGIN_COOKIE) == token
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/login" in cookie
    return b, token


def test_a_post_without_the_form_token_is_refused(sqlite_client: TestClient) -> None:
    b = TestClient(sqlite_client.app, base_url="http://localhost", follow_redirects=False)
    r = b.post("/login", data=CREDENTIALS)  # an auto-submitted form elsewhere: no cookie
    assert r.status_code == 403 and "shipyard_session" not in r.headers.get("set-cookie", "")
    b, token = browser(sqlite_client)
    r = b.post("/login", data={**CREDENTIALS, "csrf_token": "x" * 43})
    assert r.status_code == 403
    r = b.post("/login", data={**CREDENTIALS, "csrf_token": token})
    assert r.status_code == 303  # no Origin or Referer (not a browser): the token suffices


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8443"},  # another port is another origin
        {"Origin": "http://localhost.evil.example"},
        {"Referer": "https://evil.example/login"},
    ],
)
def test_a_post_from_another_origin_is_refused_even_with_a_token(
    sqlite_client: TestClient, headers: dict[str, str]
) -> None:
    b, token = browser(sqlite_client)  # e.g. a tossed cookie and a token read elsewhere
    r = b.post("/login", data={**CREDENTIALS, "csrf_token": token}, headers=headers)
    assert r.status_code == 403, r.text
    assert "another site" in r.text or "opaque origin" in r.text
    metrics = sqlite_client.get("/metrics").text
    assert 'shipyard_login_refusals_total{reason="csrf"} 1.0' in metrics
    assert "shipyard_login_password_checks_peak 0.0" in metrics  # nothing was hashed


@pytest.mark.parametrize(
    "headers", [{"Origin": "http://localhost"}, {"Referer": "http://localhost/login"}]
)
def test_the_servers_own_form_logs_in(sqlite_client: TestClient, headers: dict[str, str]) -> None:
    b, token = browser(sqlite_client)
    r = b.post("/login", data={**CREDENTIALS, "csrf_token": token}, headers=headers)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert b.get("/api/me").json()["kind"] == "user"
