"""Registry events to webhooks: signed, SSRF-guarded, delivered from the outbox."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import Env, make_env
from tests.registry.support import model, provider_source
from tests.tracing.test_alerts import Receiver

URL = "/api/registry/webhooks"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def wait_for(receiver: Receiver, count: int) -> list[tuple[dict[str, str], bytes]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with receiver.lock:
            if len(receiver.requests) >= count:
                return list(receiver.requests)
        time.sleep(0.05)
    raise AssertionError(f"{len(receiver.requests)} of {count} deliveries arrived")


def test_events_are_signed_and_delivered(gw: Env, receiver: Receiver) -> None:
    r = gw.admin.post(URL, json={"url": receiver.url, "allow_internal": True})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in gw.admin.get(URL).json()[0]
    gw.provider()
    model(gw, "support", provider_source("m-1"))
    r = gw.admin.post(
        "/api/registry/promotions", json={"name": "support", "version": 1, "environment": "dev"}
    )
    assert r.status_code == 201 and r.json()["state"] == "approved"
    arrived = wait_for(receiver, 4)
    kinds = []
    for headers, body in arrived:
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-shipyard-signature"] == want
        assert headers["user-agent"] == "Shipyard-Registry"
        kinds.append(headers["x-shipyard-event"])
    assert kinds == ["version.created", "promotion.requested", "alias.moved", "promotion.approved"]
    bodies = receiver.bodies()
    assert bodies[0]["data"] == {
        "kind": "model",
        "name": "support",
        "version": 1,
        "author": bodies[0]["data"]["author"],
    }
    assert bodies[2]["data"]["alias"] == "dev" and bodies[2]["data"]["to_version"] == 1
    assert len({b["id"] for b in bodies}) == 4  # receivers drop repeats by id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {e["state"] for e in gw.admin.get("/api/registry/events").json()}
        if states == {"delivered"}:
            break
        time.sleep(0.05)
    assert states == {"delivered"}


def test_webhook_urls_are_checked(gw: Env) -> None:
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://10.0.0.8/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
    ):
        r = gw.admin.post(URL, json={"url": url})
        assert r.status_code == 400 and "url" in r.text, (url, r.text)
    r = gw.admin.post(URL, json={"url": "https://hooks.example.com/x", "events": ["nope"]})
    assert r.status_code == 400 and "events.0" in r.text
    # allow_internal belongs to platform administrators, not workspace admins
    r = gw.admin.post("/api/keys", json={"name": "ws-admin", "role": "admin"})
    admin_key = r.json()["key"]
    headers = {"Authorization": f"Bearer {admin_key}"}
    r = gw.admin.post(
        URL, json={"url": "http://127.0.0.1:9/hook", "allow_internal": True}, headers=headers
    )
    assert r.status_code == 403
    dev = gw.admin.post("/api/keys", json={"name": "dev", "role": "developer"}).json()["key"]
    r = gw.admin.post(
        URL, json={"url": "https://hooks.example.com/x"}, headers={"Authorization": f"Bearer {dev}"}
    )
    assert r.status_code == 403
    assert gw.admin.get(URL).json() == []


def test_an_unreachable_webhook_fails_visibly(gw: Env, receiver: Receiver) -> None:
    receiver.script = [500, 500, 500]
    r = gw.admin.post(
        URL, json={"url": receiver.url, "allow_internal": True, "events": ["version.created"]}
    )
    assert r.status_code == 201
    model(gw, "m", provider_source("x"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = gw.admin.get("/api/registry/events").json()
        if found and found[0]["state"] != "pending" and found[0]["state"] != "sending":
            break
        time.sleep(0.1)
    assert found[0]["state"] == "failed"
    assert found[0]["deliveries"][0]["code"] == 500 and found[0]["deliveries"][0]["attempts"] == 3
