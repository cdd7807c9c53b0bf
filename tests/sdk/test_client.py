"""The SDK against the real app: sync in-process, async over a live loopback server."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from shipyard import AsyncClient, Client, ShipyardAPIError
from tests.support import live_server


def _key(client: TestClient) -> str:
    return client.headers["Authorization"].split(" ", 1)[1]


def test_sync_client(sqlite_client: TestClient) -> None:
    with Client("http://localhost", _key(sqlite_client), http_client=sqlite_client) as c:
        assert c.me().role.value == "owner"
        created = c.keys.create("svc", role="app")
        assert created.key.startswith("sy-")
        assert created.id in [k.id for k in c.keys.list()]
        c.keys.revoke(created.id)
        assert created.id not in [k.id for k in c.keys.list()]
        ws = c.workspaces.create("research", "Research")
        assert ws.environments == ["dev", "staging", "production"]
        user = c.users.create("ann@example.com", "Sturdy-Passphrase-42", role="viewer")
        assert c.users.set_role(user.id, "developer")["role"] == "developer"
        assert [e.action for e in c.audit.list(limit=3)][0] == "members.update"
        exported = list(c.export_audit(action="keys."))
        assert {e.action for e in exported} == {"keys.create", "keys.revoke"}
        with pytest.raises(ShipyardAPIError) as info:
            c.keys.revoke("key_nope")
        assert info.value.status == 404


async def test_async_client(sqlite_client: TestClient) -> None:
    key = _key(sqlite_client)
    with live_server(sqlite_client.app) as url:
        async with AsyncClient(url, key) as c:
            me = await c.me()
            assert me.workspace.slug == "default"
            created = await c.keys.create("async-svc")
            assert created.role.value == "app"
            keys = await c.keys.list()
            assert created.id in [k.id for k in keys]
            with pytest.raises(ShipyardAPIError) as info:
                await c.workspaces.create("Not A Slug")
            assert info.value.status == 400


def test_missing_credentials_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path))
    monkeypatch.delenv("SHIPYARD_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_API_KEY", raising=False)
    with pytest.raises(ShipyardAPIError) as info:
        Client()
    assert "--url" in info.value.detail
