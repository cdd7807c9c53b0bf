"""Gateway fixtures: the real app on loopback (uvicorn), a scripted fake upstream, an
admin client with the bootstrap key (an owner and a platform administrator)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shipyard.app import create_app
from shipyard.settings import load_settings
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.fake_upstream import FakeUpstream
from tests.support import live_server


@dataclass
class Env:
    url: str
    admin: httpx.Client
    owner_key: str
    upstream: FakeUpstream
    app: Any

    def key(self, name: str = "svc", role: str = "app", **limits: Any) -> tuple[str, str]:
        r = self.admin.post("/api/keys", json={"name": name, "role": role})
        assert r.status_code == 201, r.text
        key, key_id = r.json()["key"], r.json()["id"]
        if limits:
            r = self.admin.put(f"/api/gateway/limits/key/{key_id}", json=limits)
            assert r.status_code == 200, r.text
        return key, key_id

    def provider(
        self, name: str = "fake", kind: str = "openai", base: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "kind": kind,
            "base_url": base or self.upstream.url,
            "api_key": "sk-upstream-secret",
            # the fake upstreams listen on loopback, an internal address: allowed per
            # provider, by a platform administrator (the bootstrap key is one)
            "allow_internal": True,
            **extra,
        }
        r = self.admin.post("/api/gateway/providers", json=body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def route(self, name: str, *deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
        deps = list(deployments) or [{"provider": "fake", "model": "gpt-4o-mini"}]
        r = self.admin.put(
            f"/api/gateway/routes/{name}", json={"name": name, "deployments": deps, **extra}
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def records(self, **params: Any) -> list[dict[str, Any]]:
        self.app.state.platform.gateway.records.flush()
        r = self.admin.get("/api/gateway/requests", params=params)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def make_env(
    tmp_path: Path, upstream: FakeUpstream | None = None, **overrides: Any
) -> Iterator[Env]:
    """The app over `tmp_path / "home"`; run twice over one path, it is a restart (pass
    the same `upstream` to keep the providers' base URL)."""
    owned = upstream is None
    upstream = upstream or FakeUpstream().start()
    settings = load_settings(
        home=tmp_path / "home",
        admin_password=ADMIN_PASSWORD,
        admin_email="admin@example.com",
        gateway_retry_base_seconds=0.01,
        gateway_cooldown_seconds=60,
        gateway_probe_seconds=0.3,
        **overrides,
    )
    app = create_app(settings)
    try:
        with live_server(app) as url:
            key = orjson.loads(settings.credentials_path.read_bytes())["api_key"]
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as admin:
                yield Env(url=url, admin=admin, owner_key=key, upstream=upstream, app=app)
    finally:
        if owned:
            upstream.stop()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)
