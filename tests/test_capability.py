"""The house: a capability declared once plugs in its permissions, routes, service and a
call sink, with no edit to the gateway or to `create_app`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter

from shipyard.capability import Capability
from shipyard.gateway.records.record import Record
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity.roles import ADMINS
from shipyard.platform import Platform
from shipyard.plugins import Plugins
from shipyard.settings import load_settings
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.fake_upstream import FakeUpstream
from tests.support import live_server

router = APIRouter(prefix="/api/widgets")


@router.get("", name="widgets.list")
def list_widgets(ctx: Ctx = Authorized("widgets:read")) -> dict[str, Any]:
    service: Widgets = ctx.platform.services["widgets"]
    return {"started": service.started, "calls": [r.route for r in service.seen]}


class Broken:
    def emit(self, record: Record, call: object = None) -> None:
        raise RuntimeError("a sink that fails")


class Widgets:
    """A service that is also a call sink: what tracing will do."""

    def __init__(self, platform: Platform) -> None:
        self.started = False
        self.seen: list[Record] = []
        platform.call_sinks.append(Broken())  # a failing sink fails neither the call nor us
        platform.call_sinks.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def emit(self, record: Record, call: object = None) -> None:
        self.seen.append(record)


WIDGETS = Capability(
    name="widgets",
    permissions={"widgets:read": ADMINS},
    routers=("tests.test_capability:router",),
    service=Widgets,
)


def test_a_new_capability_plugs_in_without_edits(tmp_path: Path) -> None:
    from shipyard.app import create_app

    upstream = FakeUpstream().start()
    settings = load_settings(
        home=tmp_path / "home", admin_password=ADMIN_PASSWORD, admin_email="a@example.com"
    )
    app = create_app(settings, capabilities=[*Plugins().capabilities(), WIDGETS])
    try:
        with live_server(app) as url:
            owner = (settings.credentials_path).read_text()
            import orjson

            key = orjson.loads(owner)["api_key"]
            h = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=h, timeout=30) as admin:
                admin.post(
                    "/api/gateway/providers",
                    json={
                        "name": "fake",
                        "kind": "openai",
                        "base_url": upstream.url,
                        "allow_internal": True,  # loopback; the bootstrap key may
                    },
                ).raise_for_status()
                admin.put(
                    "/api/gateway/routes/mini",
                    json={"name": "mini", "deployments": [{"provider": "fake", "model": "m"}]},
                ).raise_for_status()
                r = admin.post(
                    "/v1/chat/completions",
                    json={"model": "mini", "messages": [{"role": "user", "content": "x"}]},
                )
                assert r.status_code == 200, r.text
                got = admin.get("/api/widgets").json()
                assert got == {"started": True, "calls": ["mini"]}
                viewer = admin.post("/api/keys", json={"name": "v", "role": "viewer"}).json()
                denied = httpx.get(
                    url + "/api/widgets", headers={"Authorization": f"Bearer {viewer['key']}"}
                )
                assert denied.status_code == 403  # its permission, deny by default
    finally:
        upstream.stop()


def test_a_permission_declared_twice_is_refused(tmp_path: Path) -> None:
    import pytest

    clash = Capability(name="clash", permissions={"gateway:call": ADMINS})
    settings = load_settings(home=tmp_path / "home", admin_password=ADMIN_PASSWORD)
    with pytest.raises(RuntimeError, match="declared twice"):
        Platform(settings, [*Plugins().capabilities(), clash])
