from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from starlette.testclient import TestClient

from shipyard.identity.models import ApiKey
from shipyard.store import utcnow
from tests.conftest import as_key, key_for


def test_a_key_is_shown_once_and_never_again(client: TestClient) -> None:
    r = client.post("/api/keys", json={"name": "checkout", "role": "developer"})
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith("sy-") and created["role"] == "developer"
    listed = client.get("/api/keys").text
    assert created["id"] in listed and secret not in listed
    assert secret.split("-", 2)[2] not in client.get("/api/audit/export").text
    me = TestClient(client.app, base_url="http://localhost").get("/api/me", headers=as_key(secret))
    assert me.json()["role"] == "developer" and me.json()["workspace"]["slug"] == "default"


def test_revocation_takes_effect_at_once(client: TestClient) -> None:
    key = key_for(client, "app")
    anonymous = TestClient(client.app, base_url="http://localhost")
    assert anonymous.get("/api/me", headers=as_key(key)).status_code == 200
    key_id = next(k["id"] for k in client.get("/api/keys").json() if k["name"] == "app-key")
    revoked = client.delete(f"/api/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    r = anonymous.get("/api/me", headers=as_key(key))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.delete("/api/keys/key_missing").status_code == 404


def test_expired_keys_are_refused(client: TestClient) -> None:
    soon = (utcnow() + timedelta(days=1)).isoformat()
    created = client.post("/api/keys", json={"name": "temp", "role": "app", "expires_at": soon})
    assert created.status_code == 201
    platform = client.app.state.platform
    with platform.db.transaction() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == created.json()["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    platform.keys.forget(created.json()["kid"])
    r = TestClient(client.app, base_url="http://localhost").get(
        "/api/me", headers=as_key(created.json()["key"])
    )
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_an_admin_cannot_mint_an_owner_key(client: TestClient) -> None:
    admin = key_for(client, "admin")
    anonymous = TestClient(client.app, base_url="http://localhost")
    r = anonymous.post("/api/keys", headers=as_key(admin), json={"name": "up", "role": "owner"})
    assert r.status_code == 403
    ok = anonymous.post("/api/keys", headers=as_key(admin), json={"name": "svc", "role": "app"})
    assert ok.status_code == 201


def test_keys_are_scoped_to_their_workspace(client: TestClient) -> None:
    client.post("/api/workspaces", json={"slug": "other"})
    mine = client.get("/api/keys").json()
    assert all(k["workspace_id"] == mine[0]["workspace_id"] for k in mine)
    workspaces = client.get("/api/workspaces").json()
    assert [w["slug"] for w in workspaces] == ["default"]  # a key sees its own workspace


def test_users_and_memberships(client: TestClient) -> None:
    r = client.post(
        "/api/users",
        json={"email": "Dev@Example.com", "password": "Sturdy-Passphrase-42", "role": "developer"},
    )
    assert r.status_code == 201 and r.json()["email"] == "dev@example.com"
    user_id = r.json()["id"]
    assert (
        client.post(
            "/api/users", json={"email": "dev@example.com", "password": "Sturdy-Passphrase-42"}
        ).status_code
        == 409
    )
    assert (
        client.put(f"/api/users/{user_id}/membership", json={"role": "viewer"}).status_code == 200
    )
    roles = {u["email"]: u["role"] for u in client.get("/api/users").json()}
    assert roles == {"admin@example.com": "owner", "dev@example.com": "viewer"}
    assert client.delete(f"/api/users/{user_id}/membership").status_code == 204
    assert len(client.get("/api/users").json()) == 1
    assert "Sturdy" not in client.get("/api/audit/export").text
