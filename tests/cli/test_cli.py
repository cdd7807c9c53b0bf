"""The CLI against a real server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
from starlette.testclient import TestClient
from typer.testing import CliRunner

from shipyard.cli.main import app
from tests.conftest import ADMIN_PASSWORD
from tests.support import free_port, live_server

runner = CliRunner()


def test_key_user_workspace_and_audit_commands(sqlite_client: TestClient) -> None:
    key = sqlite_client.headers["Authorization"].split(" ", 1)[1]
    with live_server(sqlite_client.app) as url:
        auth = ["--url", url, "--key", key]

        created = runner.invoke(app, ["keys", "create", "ci-bot", "--role", "developer", *auth])
        assert created.exit_code == 0, created.output
        new_key = created.output.strip().splitlines()[-1]
        assert new_key.startswith("sy-")

        listed = runner.invoke(app, ["keys", "list", "--json", *auth])
        rows = orjson.loads(listed.output)
        assert "ci-bot" in [r["name"] for r in rows] and new_key not in listed.output
        key_id = next(r["id"] for r in rows if r["name"] == "ci-bot")

        assert runner.invoke(app, ["keys", "revoke", key_id, *auth]).exit_code == 0
        denied = runner.invoke(app, ["keys", "list", "--url", url, "--key", new_key])
        assert denied.exit_code == 1 and "revoked" in denied.output

        made = runner.invoke(
            app,
            [
                "users",
                "create",
                "ops@example.com",
                "--role",
                "admin",
                "--password",
                "Sturdy-Passphrase-42",
                *auth,
            ],
        )
        assert made.exit_code == 0, made.output
        assert "ops@example.com" in runner.invoke(app, ["users", "list", *auth]).output

        assert runner.invoke(app, ["workspaces", "create", "ml-team", *auth]).exit_code == 0
        assert "default" in runner.invoke(app, ["workspaces", "list", *auth]).output

        tail = runner.invoke(app, ["audit", "tail", "-n", "5", *auth])
        assert tail.exit_code == 0
        assert "keys.revoke" in tail.output and "users.create" in tail.output


def test_platform_admin_commands(sqlite_client: TestClient) -> None:
    key = sqlite_client.headers["Authorization"].split(" ", 1)[1]
    with live_server(sqlite_client.app) as url:
        auth = ["--url", url, "--key", key]
        pw = ["--password", "Sturdy-Passphrase-42"]
        made = runner.invoke(app, ["users", "create", "ops@example.com", *pw, *auth])
        assert made.exit_code == 0, made.output
        granted = runner.invoke(
            app, ["users", "update", "ops@example.com", "--platform-admin", *auth]
        )
        assert granted.exit_code == 0 and "platform administrator yes" in granted.output
        minted = runner.invoke(
            app, ["keys", "create", "ops", "--role", "owner", "--platform-admin", *auth]
        )
        assert minted.exit_code == 0 and "platform administrator" in minted.output
        plain = runner.invoke(app, ["keys", "create", "own", "--role", "owner", *auth])
        owner = ["--url", url, "--key", plain.output.strip().splitlines()[-1]]
        refused = runner.invoke(app, ["keys", "create", "up", "--platform-admin", *owner])
        assert refused.exit_code == 1 and "403" in refused.output
        refused = runner.invoke(app, ["users", "update", "ops@example.com", "--deactivate", *owner])
        assert refused.exit_code == 1 and "platform administrator" in refused.output
        off = runner.invoke(app, ["users", "update", "ops@example.com", "--deactivate", *auth])
        assert off.exit_code == 0 and "deactivated" in off.output
        assert runner.invoke(app, ["users", "update", "ops@example.com", *auth]).exit_code == 2


def test_cli_reads_the_saved_credential(sqlite_client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = sqlite_client.app.state.platform.settings
    port = free_port()
    saved = orjson.loads(settings.credentials_path.read_bytes())
    saved["url"] = f"http://127.0.0.1:{port}"
    settings.credentials_path.write_bytes(orjson.dumps(saved))
    monkeypatch.setenv("SHIPYARD_HOME", str(settings.home))
    with live_server(sqlite_client.app, port=port):
        result = runner.invoke(app, ["keys", "list"])
    assert result.exit_code == 0 and "admin" in result.output


def test_unreachable_server_is_a_clear_error() -> None:
    result = runner.invoke(app, ["keys", "list", "--url", "http://127.0.0.1:9", "--key", "sy-x-y"])
    assert result.exit_code == 1 and "cannot reach" in result.output


def test_shipyard_up_serves_and_refuses_bad_config(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    exe = [sys.executable, "-m", "shipyard.cli", "up", "--port", str(port)]
    proc = subprocess.Popen(exe, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        assert (tmp_path / "home" / "credentials.json").stat().st_mode & 0o777 == 0o600
        heavy = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert heavy.json() == {"status": "ok"}
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "API key:  sy-" in stderr and ADMIN_PASSWORD not in stderr

    (tmp_path / "shipyard.yaml").write_text("port: not-a-number\n")
    bad = subprocess.run(
        exe[:-2], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "port" in bad.stderr

    env["SHIPYARD_ADMIN_PASSWORD"] = "weak"
    env["SHIPYARD_HOME"] = str(tmp_path / "fresh")
    (tmp_path / "shipyard.yaml").unlink()
    weak = subprocess.run(exe, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert weak.returncode != 0 and "admin_password" in weak.stderr
