"""Artifact routes end to end, on the local folder and on a real S3-compatible server
(SeaweedFS on loopback): upload, download, a version's files by name; every traversal
encoding refused on every route that takes a name; pickles refused; sizes capped; a
workspace reads only what it uploaded."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.identity import service as identity
from shipyard.identity.roles import Role
from tests.gateway.conftest import Env, make_env
from tests.registry.conftest import S3Server
from tests.registry.support import safetensors, upload

OCTETS = {"content-type": "application/octet-stream"}
TRAVERSALS = [
    "../evil",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "..\\evil",
    "C:evil",
    "%2e%2e%2fevil",
    "%252e%252e%252fevil",
    "..%c0%afevil",
    "..%2fevil",
    "．．/evil",  # fullwidth dots
    "a//b",
    "./a",
    "a/./b",
    "",
]


@pytest.fixture(params=["local", "s3"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    extra: dict[str, Any] = {"artifact_max_bytes": 64 * 1024}
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        extra |= {
            "artifact_s3_bucket": "routes",
            "artifact_s3_endpoint": server.endpoint_url,
            "artifact_s3_access_key": server.access_key,
            "artifact_s3_secret_key": server.secret_key,
            "artifact_s3_prefix": f"t-{uuid.uuid4().hex}",
        }
    yield from make_env(tmp_path, **extra)


def test_upload_download_and_version_files(gw: Env) -> None:
    data = safetensors(16)
    sha = upload(gw.admin, "weights/model.safetensors", data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert upload(gw.admin, "copy.safetensors", data) == sha  # one blob
    listed = gw.admin.get("/api/registry/artifacts").json()
    assert [(a["sha256"], a["format"], a["size"]) for a in listed] == [
        (sha, "safetensors", len(data))
    ]
    r = gw.admin.get(f"/api/registry/artifacts/{sha}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-content-sha256"] == sha
    # a version names its files; they download by that name
    gw.admin.post("/api/registry/models", json={"name": "m"})
    body = {
        "source": {"kind": "route", "route": "smollm2"},
        "artifacts": [{"sha256": sha, "name": "weights/model.safetensors"}],
    }
    r = gw.admin.post("/api/registry/models/m/versions", json=body)
    assert r.status_code == 201, r.text
    r = gw.admin.get("/api/registry/models/m/versions/1/files/weights/model.safetensors")
    assert r.status_code == 200 and r.content == data
    assert gw.admin.get("/api/registry/models/m/versions/1/files/nope.json").status_code == 404
    # a version cannot name what was never uploaded here
    other = {**body, "artifacts": [{"sha256": "0" * 64, "name": "x.json"}]}
    r = gw.admin.post("/api/registry/models/m/versions", json=other)
    assert r.status_code == 400 and "artifacts.0" in r.text
    r = gw.admin.post(
        "/api/registry/models/m/versions",
        json={"source": {"kind": "gguf", "artifact": "1" * 64}},
    )
    assert r.status_code == 400 and "source.artifact" in r.text


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_is_refused_on_every_route(gw: Env, bad: str) -> None:
    r = gw.admin.post(
        "/api/registry/artifacts", params={"name": bad}, content=b"{}", headers=OCTETS
    )
    assert r.status_code in (400, 422), (bad, r.text)
    gw.admin.post("/api/registry/models", json={"name": "m"})
    sha = upload(gw.admin, "ok.json", b"{}")
    body = {
        "source": {"kind": "route", "route": "smollm2"},
        "artifacts": [{"sha256": sha, "name": bad}],
    }
    r = gw.admin.post("/api/registry/models/m/versions", json=body)
    assert r.status_code in (400, 422), (bad, r.text)
    # the file route, with the name raw in the path (httpx would normalize `..`)
    body["artifacts"] = [{"sha256": sha, "name": "ok.json"}]
    assert gw.admin.post("/api/registry/models/m/versions", json=body).status_code == 201
    raw = f"{gw.url}/api/registry/models/m/versions/1/files/{bad}"
    with httpx.Client(headers=gw.admin.headers) as c:
        r = c.send(c.build_request("GET", httpx.URL(raw)))
    assert r.status_code in (400, 404, 422), (bad, r.status_code)
    assert b"root:" not in r.content
    # the download route takes a sha256 only
    r = gw.admin.get(f"/api/registry/artifacts/{bad or 'x'}")
    assert r.status_code in (400, 404, 422)


def test_unsafe_formats_and_sizes(gw: Env) -> None:
    for name, data in (
        ("model.pkl", pickle.dumps({"a": 1})),
        ("model.bin", b"\x00" * 32),
        ("weights.safetensors", pickle.dumps([1, 2, 3], protocol=4)),
        ("model.pt", b"PK\x03\x04" + b"\x00" * 40),
        ("notes.txt", b"\xff\xfe\xfa"),
    ):
        r = gw.admin.post(
            "/api/registry/artifacts", params={"name": name}, content=data, headers=OCTETS
        )
        assert r.status_code in (400, 415), (name, r.text)
    big = b"x" * (64 * 1024 + 1)
    r = gw.admin.post(
        "/api/registry/artifacts", params={"name": "big.txt"}, content=big, headers=OCTETS
    )
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # chunked, so no Content-Length to refuse early
        for _ in range(80):
            yield b"y" * 1024

    r = gw.admin.post(
        "/api/registry/artifacts", params={"name": "big.txt"}, content=chunks(), headers=OCTETS
    )
    assert r.status_code == 413
    assert gw.admin.get("/api/registry/artifacts").json() == []


def test_a_workspace_reads_only_what_it_uploaded(gw: Env) -> None:
    sha = upload(gw.admin, "config.json", b'{"hidden_size": 8}')
    r = gw.admin.post("/api/workspaces", json={"slug": "other"})
    assert r.status_code == 201, r.text
    with gw.app.state.platform.db.transaction() as s:
        _, key = identity.create_key(
            s, actor=None, workspace_id=r.json()["id"], name="other", role=Role("admin")
        )
    other = {"Authorization": f"Bearer {key}"}
    upload(httpx.Client(base_url=gw.url, headers=other), "mine.json", b"[]")
    r = httpx.get(f"{gw.url}/api/registry/artifacts/{sha}", headers=other)
    assert r.status_code == 404
    viewer = gw.admin.post("/api/keys", json={"name": "v", "role": "viewer"}).json()["key"]
    r = httpx.post(
        f"{gw.url}/api/registry/artifacts",
        params={"name": "x.json"},
        content=b"{}",
        headers={**OCTETS, "Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 403
