"""Bad input gets a clear 4xx problem body: never a 500, a stack trace or a half write."""

from __future__ import annotations

import orjson
import pytest
from starlette.testclient import TestClient

from tests.conftest import as_key, key_for

PROBLEM = "application/problem+json"


def _problem(r, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == status
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


def test_non_json_state_change_is_415(client: TestClient) -> None:
    r = client.post("/api/keys", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert "application/json" in _problem(r, 415)["detail"]


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    r = client.post("/api/keys", content=big, headers={"Content-Type": "application/json"})
    _problem(r, 413)


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(6):
            yield b"x" * 1024 * 1024
        yield b'"}'

    r = client.post("/api/keys", content=chunks(), headers={"Content-Type": "application/json"})
    _problem(r, 413)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b'{"name": ""}', "name"),
        (b'{"name": "k", "role": "emperor"}', "role"),
        (b'{"name": "k", "surprise": 1}', "surprise"),
        (b'{"name": "k", "expires_at": "yesterday"}', "expires_at"),
        (b"[]", "body"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: TestClient, body: bytes, field: str
) -> None:
    r = client.post("/api/keys", content=body, headers={"Content-Type": "application/json"})
    problem = _problem(r, 422)
    assert field in problem["detail"]


def test_business_rule_violations_are_400_or_409(client: TestClient) -> None:
    r = client.post("/api/keys", json={"name": "k", "expires_at": "2001-01-01T00:00:00Z"})
    assert "expires_at" in _problem(r, 400)["detail"]
    assert client.post("/api/workspaces", json={"slug": "team-a"}).status_code == 201
    _problem(client.post("/api/workspaces", json={"slug": "team-a"}), 409)


def test_unknown_host_is_refused(client: TestClient) -> None:
    r = client.get("/healthz", headers={"Host": "attacker.example"})
    _problem(r, 400)


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    _problem(client.get("/api/nothing-here"), 404)
    _problem(client.put("/healthz", json={}), 405)


@pytest.mark.parametrize(
    "header",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer sy-zz-zz", "Bearer sy-000000000000-wrong", "x"],
)
def test_bad_credentials_are_401(client: TestClient, header: str) -> None:
    anonymous = TestClient(client.app, base_url="http://localhost")
    r = anonymous.get("/api/me", headers={"Authorization": header})
    _problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"


def test_failed_request_writes_nothing_but_its_audit_entry(client: TestClient) -> None:
    before = client.get("/api/users").json()
    r = client.post("/api/users", json={"email": "new@example.com", "password": "weak"})
    assert "at least 12" in _problem(r, 400)["detail"]
    assert client.get("/api/users").json() == before
    entry = client.get("/api/audit", params={"action": "users.create"}).json()[0]
    assert entry["outcome"] == "failed" and entry["status"] == 400
    assert "weak" not in orjson.dumps(entry).decode()


def test_security_headers_are_set(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


def test_app_key_cannot_read_the_platform(client: TestClient) -> None:
    app_key = key_for(client, "app")
    anonymous = TestClient(client.app, base_url="http://localhost")
    assert anonymous.get("/api/me", headers=as_key(app_key)).status_code == 200
    _problem(anonymous.get("/api/keys", headers=as_key(app_key)), 403)
