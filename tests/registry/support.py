"""Registry test helpers: people logged in through the web form (approvals need a
person, not an API key), on the gateway's live-server environment."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.conftest import Env
from tests.support import form_login

PASSWORD = "Quiet-Harbour-Lantern-42"


def person(env: Env, email: str, role: str) -> httpx.Client:
    """A user of the workspace, logged in with a cookie session and its CSRF header."""
    r = env.admin.post("/api/users", json={"email": email, "password": PASSWORD, "role": role})
    assert r.status_code == 201, r.text
    client = httpx.Client(base_url=env.url, timeout=30)
    assert form_login(client, email, PASSWORD).status_code == 303
    page = client.get("/", headers={"accept": "text/html"})
    csrf = page.text.split('"X-CSRF-Token": "', 1)[1].split('"')[0]
    client.headers["x-csrf-token"] = csrf
    return client


def model(env: Env, name: str, *sources: dict[str, Any], **version: Any) -> None:
    """A registered model with one version per source."""
    r = env.admin.post("/api/registry/models", json={"name": name})
    assert r.status_code == 201, r.text
    for source in sources:
        r = env.admin.post(
            f"/api/registry/models/{name}/versions", json={"source": source, **version}
        )
        assert r.status_code == 201, r.text


def provider_source(model_id: str, provider: str = "fake") -> dict[str, Any]:
    return {"kind": "provider", "provider": provider, "model": model_id}


def chat(env: Env, key: str, model_name: str) -> httpx.Response:
    return httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model_name, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def safetensors(values: int = 1) -> bytes:
    """A small, valid safetensors file: one float32 tensor of `values` zeros."""
    import json
    import struct

    header = {"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * (4 * values)


def upload(client: Any, name: str, data: bytes) -> str:
    """Upload an artifact; its sha256."""
    r = client.post(
        "/api/registry/artifacts",
        params={"name": name},
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])
