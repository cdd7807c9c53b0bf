"""/api/tracing/settings: a workspace's masking, retention and content capture, on SQLite
and PostgreSQL; who may read and change them; bad input; the audit trail; the change
reaching what ingest masks with."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipyard.tracing import config
from shipyard.tracing.masking import DETECTORS, MAX_CUSTOM, Masker
from tests.conftest import as_key, key_for

URL = "/api/tracing/settings"


def _anon(client: TestClient) -> TestClient:
    anon = TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)
    return anon


def _workspace_id(client: TestClient) -> str:
    return str(client.get("/api/me").json()["workspace"]["id"])


def test_defaults_before_anything_is_set(client: TestClient) -> None:
    r = client.get(URL)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "detectors": list(DETECTORS),
        "custom_patterns": [],
        "retention_days": None,
        "capture_content": True,
        "updated_at": None,
    }


def test_put_then_get(client: TestClient) -> None:
    body = {
        "detectors": ["email", "secret"],
        "custom_patterns": [r"ACME-\d{6}", "(?i)project falcon"],
        "retention_days": 30,
        "capture_content": False,
    }
    r = client.put(URL, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["updated_at"] is not None
    assert {k: out[k] for k in body} == body
    assert client.get(URL).json() == out
    # PUT replaces the whole: what is left out takes its default
    r = client.put(URL, json={"retention_days": 7})
    assert r.status_code == 200
    assert r.json()["detectors"] == list(DETECTORS)
    assert r.json()["custom_patterns"] == [] and r.json()["capture_content"] is True
    # none at all is a choice too
    assert client.put(URL, json={"detectors": []}).json()["detectors"] == []


def test_the_change_reaches_ingest_at_once(client: TestClient) -> None:
    """Ingest reads the settings from memory: the PUT reloads them on this replica."""
    platform: Any = client.app.state.platform  # type: ignore[attr-defined]  # Starlette's app
    tracing = platform.services["tracing"]
    ws = _workspace_id(client)
    assert tracing.config(ws) == config.DEFAULT
    body = {"detectors": ["ip"], "custom_patterns": ["emp-[0-9]+"], "retention_days": 3}
    assert client.put(URL, json=body).status_code == 200
    now = tracing.config(ws)
    assert now.masker == Masker(["ip"], ["emp-[0-9]+"])
    assert now.retention_days == 3 and now.capture_content is True
    assert (
        now.masker.mask("emp-7 at 10.0.0.1 bob@example.com") == "[MASKED] at [IP] bob@example.com"
    )


def test_settings_are_per_workspace(client: TestClient) -> None:
    platform: Any = client.app.state.platform  # type: ignore[attr-defined]  # Starlette's app
    other = client.post("/api/workspaces", json={"slug": "other"})
    assert other.status_code == 201, other.text
    other_id = other.json()["id"]
    with platform.db.transaction() as session:
        config.update(session, other_id, detectors=["email"], retention_days=1)
    assert client.get(URL).json()["detectors"] == list(DETECTORS)  # the caller's own
    assert client.put(URL, json={"detectors": ["phone"]}).status_code == 200
    loaded = config.load_all(platform.db)
    assert loaded[other_id].detectors == ("email",) and loaded[other_id].retention_days == 1
    assert loaded[_workspace_id(client)].detectors == ("phone",)


def test_who_may_read_and_change(client: TestClient) -> None:
    anon = _anon(client)
    viewer = as_key(key_for(client, "viewer"))
    developer = as_key(key_for(client, "developer"))
    admin = as_key(key_for(client, "admin"))
    app = as_key(key_for(client, "app"))
    assert anon.get(URL).status_code == 401
    assert anon.put(URL, json={}).status_code == 401
    assert anon.get(URL, headers=viewer).status_code == 200
    assert anon.get(URL, headers=app).status_code == 403  # an app key sends spans only
    for who in (viewer, developer, app):
        r = anon.put(URL, headers=who, json={"detectors": []})
        assert r.status_code == 403, r.text
        assert "tracing:manage" in r.json()["detail"]
    assert anon.put(URL, headers=admin, json={"detectors": ["email"]}).status_code == 200
    assert client.get(URL).json()["detectors"] == ["email"]  # the refused PUTs changed nothing


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"detectors": ["email", "ssn"]}, "detectors.1", "email"),
        ({"custom_patterns": ["ok", "("]}, "custom_patterns.1", "not a valid pattern"),
        ({"custom_patterns": [r"(a)\1"]}, "custom_patterns.0", "backreferences"),
        ({"custom_patterns": ["x?"]}, "custom_patterns.0", "empty string"),
        ({"custom_patterns": [""]}, "custom_patterns.0", "at least 1"),
        ({"custom_patterns": ["x" * 501]}, "custom_patterns.0", "at most 500"),
        ({"custom_patterns": [f"p{i}" for i in range(MAX_CUSTOM + 1)]}, "custom_patterns", "20"),
        ({"custom_patterns": "ACME"}, "custom_patterns", "list"),
        ({"custom_patterns": ["a\x00b"]}, "custom_patterns", "NUL"),
        ({"custom_patterns": ["a\ud800"]}, "custom_patterns.0", "valid string"),
        ({"retention_days": 0}, "retention_days", "greater than or equal to 1"),
        ({"retention_days": 100_000}, "retention_days", "less than or equal"),
        ({"retention_days": "forever"}, "retention_days", "integer"),
        ({"capture_content": "sometimes"}, "capture_content", "boolean"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    before = client.get(URL).json()
    # ASCII-escaped JSON, as a client may send a lone surrogate ("\\ud800")
    r = client.put(URL, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    problem = r.json()
    fields = [e["field"] for e in problem["errors"]]
    assert field in fields, problem
    assert words in problem["detail"], problem
    assert client.get(URL).json() == before


def test_a_change_is_audited(client: TestClient) -> None:
    body = {"detectors": ["email"], "custom_patterns": ["ACME-[0-9]+"], "retention_days": 9}
    assert client.put(URL, json=body).status_code == 200
    entries = client.get("/api/audit", params={"action": "tracing.settings.put"}).json()
    assert len(entries) == 1
    entry = entries[0]
    assert entry["outcome"] == "success"
    assert entry["target"] == f"workspace:{_workspace_id(client)}"
    assert "retention_days=9" in entry["detail"] and "custom_patterns=1" in entry["detail"]
    # a refused change is audited too
    viewer = as_key(key_for(client, "viewer"))
    assert _anon(client).put(URL, headers=viewer, json={}).status_code == 403
    entries = client.get("/api/audit", params={"action": "tracing.settings.put"}).json()
    assert [e["outcome"] for e in entries].count("success") == 1
    assert len(entries) == 2
