"""Fuzzing fixtures: Hypothesis profiles, and the real app in process with its `/v1`
routes pointed at the scripted fake upstream (a real HTTP server on loopback).

Profiles (`HYPOTHESIS_PROFILE`): `ci` (the default: derandomized, so every run tries
the same examples; few of them, to stay fast on two cores) and `deep` (random, many
more examples: run it locally to hunt, then pin what it finds as a test)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import load_settings
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.fake_upstream import FakeUpstream

_SLOW = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW,
)
settings.register_profile(
    "deep",
    max_examples=500,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CHAT_ROUTES = ("fuzz-openai", "fuzz-claude", "fuzz-gemini")
EMBEDDING_ROUTES = ("fuzz-embed",)


@dataclass
class World:
    client: TestClient  # authenticated as the bootstrap admin
    app_key: str  # a key with the app role: what calls /v1
    upstream: FakeUpstream
    settings: Any

    def v1(self, path: str, body: bytes) -> Any:
        return self.client.post(
            path,
            content=body,
            headers={
                "Authorization": f"Bearer {self.app_key}",
                "Content-Type": "application/json",
            },
        )


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One app for a module's examples (building one per example would dominate)."""
    upstream = FakeUpstream().start()
    home = tmp_path_factory.mktemp("fuzz") / "home"
    cfg = load_settings(
        home=home,
        admin_password=ADMIN_PASSWORD,
        admin_email="admin@example.com",
        gateway_retry_base_seconds=0.001,
        gateway_cooldown_seconds=0,  # a failure shows as itself, not as a cooled route
        local_threads=1,  # the built-in SmolLM2: one thread leaves the other core free
    )
    try:
        with TestClient(
            create_app(cfg), base_url="http://localhost", raise_server_exceptions=False
        ) as client:
            admin = orjson.loads(cfg.credentials_path.read_bytes())["api_key"]
            client.headers["Authorization"] = f"Bearer {admin}"
            for name, kind, base in (
                ("fake", "openai", upstream.url),
                ("claude", "anthropic", upstream.root),
                ("google", "gemini", upstream.root),
            ):
                body = {
                    "name": name,
                    "kind": kind,
                    "base_url": base,
                    "api_key": "sk-upstream-secret",
                    "allow_internal": True,  # the fake upstream is on loopback
                }
                _ok(client.post("/api/gateway/providers", json=body), 201)
            for route, provider, model, kind in (
                ("fuzz-openai", "fake", "gpt-4o-mini", "chat"),
                ("fuzz-claude", "claude", "claude-sonnet-4-0", "chat"),
                ("fuzz-gemini", "google", "gemini-2.0-flash", "chat"),
                ("fuzz-embed", "fake", "text-embedding-3-small", "embedding"),
            ):
                spec = {
                    "name": route,
                    "kind": kind,
                    "deployments": [{"provider": provider, "model": model}],
                }
                _ok(client.put(f"/api/gateway/routes/{route}", json=spec))
            key = _ok(client.post("/api/keys", json={"name": "fuzz", "role": "app"}), 201)
            yield World(client=client, app_key=key["key"], upstream=upstream, settings=cfg)
    finally:
        upstream.stop()
