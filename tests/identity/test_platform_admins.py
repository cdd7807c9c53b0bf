"""Platform administrators and member ranks, attacked over the API: instance-wide powers
need the platform-admin flag (no workspace role has them, owner included), only a
platform admin hands the flag out, and nobody changes or removes a member at or above
their own rank."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import select
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.http.deps import CSRF_HEADER, SESSION_COOKIE
from shipyard.identity.models import User
from shipyard.settings import Settings
from tests.conftest import as_key, key_for

PASSWORD = "Sturdy-Passphrase-42"


def _anon(client: TestClient) -> TestClient:
    return TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)


def _user(client: TestClient, email: str, role: str) -> str:
    r = client.post("/api/users", json={"email": email, "password": PASSWORD, "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _user_id(client: TestClient, email: str) -> str:
    return next(u["id"] for u in client.get("/api/users").json() if u["email"] == email)


def _session(client: TestClient, email: str) -> TestClient:
    """A logged-in browser of `email` (a real login session, opened by the platform)."""
    platform: Any = client.app.state.platform  # type: ignore[attr-defined]  # set by create_app
    with platform.db.transaction() as s:
        user = s.scalars(select(User).where(User.email == email)).one()
    workspace_id = client.get("/api/me").json()["workspace"]["id"]
    token, csrf = platform.sessions.open(user, workspace_id)
    browser = _anon(client)
    browser.cookies.set(SESSION_COOKIE, token)
    browser.headers[CSRF_HEADER] = csrf
    return browser


def _audit(client: TestClient, action: str) -> list[dict[str, Any]]:
    return [e for e in client.get("/api/audit", params={"action": action}).json()]


# Instance-wide powers ------------------------------------------------------------------


def test_an_owner_without_the_flag_is_refused_platform_routes(client: TestClient) -> None:
    owner = as_key(key_for(client, "owner"))
    anon = _anon(client)
    assert anon.get("/api/me", headers=owner).json()["platform_admin"] is False
    r = anon.post("/api/workspaces", headers=owner, json={"slug": "mine"})
    assert r.status_code == 403 and "platform administrator" in r.json()["detail"]
    r = anon.patch("/api/users/admin@example.com", headers=owner, json={"platform_admin": False})
    assert r.status_code == 403 and "platform administrator" in r.json()["detail"]
    # the bootstrap key is a platform administrator
    assert client.get("/api/me").json()["platform_admin"] is True
    assert client.post("/api/workspaces", json={"slug": "mine"}).status_code == 201


def test_entries_of_no_workspace_are_for_platform_admins_only(client: TestClient) -> None:
    # the first start's grant is an entry of no workspace (as are anonymous denials)
    owner = as_key(key_for(client, "owner"))
    anon = _anon(client)
    for path in ("/api/audit", "/api/audit/export"):
        seen = anon.get(path, headers=owner)
        assert seen.status_code == 200 and "keys.create" in seen.text
        assert '"workspace_id":null' not in seen.text.replace(" ", "")
        assert "platform.bootstrap" not in seen.text
    events = client.get("/api/audit").json()
    boot = next(e for e in events if e["action"] == "platform.bootstrap")
    assert boot["workspace_id"] is None and boot["detail"] == "role=owner platform_admin=true"
    exported = [orjson.loads(line) for line in client.get("/api/audit/export").text.splitlines()]
    assert any(e["action"] == "platform.bootstrap" for e in exported)


# Granting the flag ---------------------------------------------------------------------


def test_only_a_platform_admin_grants_the_flag(client: TestClient) -> None:
    owner = as_key(key_for(client, "owner"))
    anon = _anon(client)
    dev_id = _user(client, "dev@example.com", "developer")
    r = anon.post(
        "/api/keys", headers=owner, json={"name": "up", "role": "owner", "platform_admin": True}
    )
    assert r.status_code == 403 and "platform administrator" in r.json()["detail"]
    body = {"email": "x@example.com", "password": PASSWORD, "platform_admin": True}
    assert anon.post("/api/users", headers=owner, json=body).status_code == 403
    r = anon.patch(f"/api/users/{dev_id}", headers=owner, json={"platform_admin": True})
    assert r.status_code == 403
    assert "up" not in [k["name"] for k in client.get("/api/keys").json()]
    # a platform admin grants it, and each grant is audited
    minted = client.post("/api/keys", json={"name": "ops", "role": "admin", "platform_admin": True})
    assert minted.status_code == 201 and minted.json()["platform_admin"] is True
    ops = as_key(minted.json()["key"])
    assert anon.post("/api/workspaces", headers=ops, json={"slug": "ops"}).status_code == 201
    granted = client.patch(f"/api/users/{dev_id}", json={"platform_admin": True})
    assert granted.status_code == 200 and granted.json()["platform_admin"] is True
    made = client.post("/api/users", json={**body, "role": "viewer"})
    assert made.status_code == 201 and made.json()["platform_admin"] is True
    assert _audit(client, "keys.create")[0]["detail"] == "role=admin platform_admin=true"
    update = _audit(client, "users.update_account")[0]
    assert update["target"] == "user:dev@example.com" and update["detail"] == "platform_admin=true"
    assert _audit(client, "users.create")[0]["detail"] == "role=viewer platform_admin=true"
    denied = [e for e in _audit(client, "keys.create") if e["outcome"] == "denied"]
    assert denied and denied[0]["status"] == 403
    # the user's sessions carry it, in every workspace they belong to
    assert _session(client, "dev@example.com").get("/api/me").json()["platform_admin"] is True


def test_the_last_platform_admin_stays_and_deactivation_ends_sessions(
    client: TestClient,
) -> None:
    for change in ({"platform_admin": False}, {"is_active": False}):
        r = client.patch("/api/users/admin@example.com", json=change)
        assert r.status_code == 409 and "last active platform administrator" in r.json()["detail"]
    assert client.patch("/api/users/usr_missing", json={"is_active": False}).status_code == 404
    _user(client, "ops@example.com", "admin")
    assert client.patch("/api/users/ops@example.com", json={"platform_admin": True}).is_success
    browser = _session(client, "admin@example.com")
    assert browser.get("/api/me").status_code == 200
    off = client.patch("/api/users/admin@example.com", json={"is_active": False})
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert browser.get("/api/me").status_code == 401


def test_the_flag_survives_restarts_and_key_cache_reloads(settings: Settings) -> None:
    with _app(settings) as client:
        minted = client.post(
            "/api/keys", json={"name": "ops", "role": "admin", "platform_admin": True}
        )
        ops, kid = minted.json()["key"], minted.json()["kid"]
        plain = key_for(client, "owner")
        platform: Any = client.app.state.platform  # type: ignore[attr-defined]  # set by create_app
        assert _anon(client).get("/api/me", headers=as_key(ops)).json()["platform_admin"]
        cached = platform.keys.cached(ops)  # warm: verified from memory, no database read
        assert cached is not None and cached.platform_admin is True
        platform.keys.forget(kid)
        assert platform.keys.cached(ops) is None
        assert platform.keys.authenticate(ops).platform_admin is True  # reloaded from the row
        _user(client, "dev@example.com", "developer")
        client.patch("/api/users/dev@example.com", json={"platform_admin": True})
    with _app(settings) as client:  # a restart on the same data
        anon = _anon(client)
        assert (
            anon.post("/api/workspaces", headers=as_key(ops), json={"slug": "a"}).status_code == 201
        )
        assert (
            anon.post("/api/workspaces", headers=as_key(plain), json={"slug": "b"}).status_code
            == 403
        )
        assert _session(client, "dev@example.com").get("/api/me").json()["platform_admin"] is True
        assert client.get("/api/me").json()["platform_admin"] is True  # the bootstrap key


@contextmanager
def _app(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        key = orjson.loads(settings.credentials_path.read_bytes())["api_key"]
        c.headers["Authorization"] = f"Bearer {key}"
        yield c


# Member ranks --------------------------------------------------------------------------


def test_an_admin_cannot_touch_owners_or_other_admins(client: TestClient) -> None:
    owner2 = _user(client, "owner2@example.com", "owner")
    adm = _user(client, "adm@example.com", "admin")
    adm2 = _user(client, "adm2@example.com", "admin")
    dev = _user(client, "dev@example.com", "developer")
    admin = _session(client, "adm@example.com")  # a real admin, logged in
    for target in (owner2, adm2):
        r = admin.put(f"/api/users/{target}/membership", json={"role": "viewer"})
        assert r.status_code == 403 and "cannot change the role" in r.json()["detail"]
        r = admin.delete(f"/api/users/{target}/membership")
        assert r.status_code == 403 and "cannot remove" in r.json()["detail"]
    assert admin.put(f"/api/users/{dev}/membership", json={"role": "owner"}).status_code == 403
    assert admin.put(f"/api/users/{dev}/membership", json={"role": "admin"}).status_code == 200
    assert admin.put(f"/api/users/{dev}/membership", json={"role": "viewer"}).status_code == 403
    # an admin key is bound by the same rule
    key = as_key(key_for(client, "admin"))
    assert _anon(client).delete(f"/api/users/{owner2}/membership", headers=key).status_code == 403
    # stepping down oneself is allowed
    assert admin.put(f"/api/users/{adm}/membership", json={"role": "developer"}).status_code == 200
    roles = {u["email"]: u["role"] for u in client.get("/api/users").json()}
    assert roles["owner2@example.com"] == "owner" and roles["adm2@example.com"] == "admin"
    assert roles["adm@example.com"] == "developer" and roles["dev@example.com"] == "admin"
    refused = [e for e in _audit(client, "members.") if e["outcome"] == "denied"]
    assert len(refused) >= 4


def test_an_owner_without_the_flag_cannot_touch_another_owner(client: TestClient) -> None:
    owner2 = _user(client, "owner2@example.com", "owner")
    adm = _user(client, "adm@example.com", "admin")
    owner = as_key(key_for(client, "owner"))
    anon = _anon(client)
    r = anon.put(f"/api/users/{owner2}/membership", headers=owner, json={"role": "admin"})
    assert r.status_code == 403
    assert anon.delete(f"/api/users/{owner2}/membership", headers=owner).status_code == 403
    assert anon.delete(f"/api/users/{adm}/membership", headers=owner).status_code == 204
    # a platform admin can (the way back into a workspace whose owner is gone)
    r = client.put(f"/api/users/{owner2}/membership", json={"role": "admin"})
    assert r.status_code == 200


def test_the_last_owner_cannot_be_removed_or_demoted(client: TestClient) -> None:
    me = _user_id(client, "admin@example.com")
    for r in (
        client.delete(f"/api/users/{me}/membership"),  # a platform admin
        client.put(f"/api/users/{me}/membership", json={"role": "admin"}),
        _session(client, "admin@example.com").delete(f"/api/users/{me}/membership"),  # oneself
    ):
        assert r.status_code == 409, r.text
        assert "last owner" in r.json()["detail"]
    _user(client, "owner2@example.com", "owner")
    assert client.delete(f"/api/users/{me}/membership").status_code == 204


def test_key_revocation_follows_the_ranks(client: TestClient) -> None:
    keys = {k["name"]: k["id"] for k in client.get("/api/keys").json()}
    bootstrap = keys["admin (bootstrap)"]
    owner_key = client.post("/api/keys", json={"name": "own", "role": "owner"}).json()
    admin2 = client.post("/api/keys", json={"name": "adm2", "role": "admin"}).json()
    admin = as_key(key_for(client, "admin"))
    owner = as_key(key_for(client, "owner"))
    anon = _anon(client)
    r = anon.delete(f"/api/keys/{owner_key['id']}", headers=admin)
    assert r.status_code == 403 and "cannot revoke a key with role owner" in r.json()["detail"]
    assert anon.delete(f"/api/keys/{bootstrap}", headers=admin).status_code == 403
    assert anon.delete(f"/api/keys/{bootstrap}", headers=owner).status_code == 403
    assert anon.delete(f"/api/keys/{admin2['id']}", headers=admin).status_code == 200
    assert anon.delete(f"/api/keys/{owner_key['id']}", headers=owner).status_code == 200
    assert anon.get("/api/me", headers=as_key(owner_key["key"])).status_code == 401
    assert client.get("/api/me").status_code == 200  # the bootstrap key still works
