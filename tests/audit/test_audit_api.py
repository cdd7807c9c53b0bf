from __future__ import annotations

import orjson
from starlette.testclient import TestClient

from tests.conftest import as_key, key_for


def test_mutations_and_denials_are_recorded(client: TestClient) -> None:
    viewer = key_for(client, "viewer", name="reader")
    anonymous = TestClient(client.app, base_url="http://localhost")
    anonymous.post("/api/keys", headers=as_key(viewer), json={"name": "x"})
    anonymous.get("/api/keys")
    client.app.state.platform.denials.flush(everything=True)  # anonymous ones: per minute
    events = client.get("/api/audit").json()
    created = next(e for e in events if e["action"] == "keys.create" and e["outcome"] == "success")
    assert created["actor"].startswith("key:admin (bootstrap)") and created["target"].startswith(
        "key:"
    )
    assert created["client_addr"] == "testclient"
    denied = next(
        e for e in events if e["outcome"] == "denied" and e["actor"].startswith("key:reader")
    )
    assert denied["status"] == 403 and denied["action"] == "keys.create"
    anon = next(e for e in events if e["actor"] == "anonymous")
    assert anon["status"] == 401 and anon["workspace_id"] is None  # platform admins see it
    assert anon["action"] == "api.denied" and anon["detail"].startswith("count=1;")


def test_filters_and_paging(client: TestClient) -> None:
    for i in range(5):
        key_for(client, "app", name=f"k{i}")
    page = client.get("/api/audit", params={"action": "keys.create", "limit": 2}).json()
    assert len(page) == 2 and page[0]["id"] > page[1]["id"]
    rest = client.get("/api/audit", params={"action": "keys.", "before_id": page[1]["id"]}).json()
    assert len(rest) == 3
    assert client.get("/api/audit", params={"outcome": "denied", "actor": "k1"}).json() == []
    assert client.get("/api/audit", params={"outcome": "bogus"}).status_code == 422


def test_export_is_jsonl(client: TestClient) -> None:
    for i in range(3):
        key_for(client, "app", name=f"e{i}")
    r = client.get("/api/audit/export", params={"action": "keys.create"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    rows = [orjson.loads(line) for line in r.text.splitlines()]
    assert [row["target"].startswith("key:") for row in rows] == [True] * 3
