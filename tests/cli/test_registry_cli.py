"""`shipyard registry` against the real app on loopback: the catalog in and out,
models and versions, an upload, promotion with a second person, rollback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shipyard.cli.main import app
from tests.gateway.conftest import Env, make_env
from tests.registry.support import person, safetensors
from tests.registry.test_catalog import CATALOG

runner = CliRunner()


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})  # room for the tables
    assert result.exit_code == 0, result.output
    return result.output


def _names(out: str) -> list[str]:
    return [e["name"] for e in json.loads(out) if not e["builtin"]]


def test_catalog_import_search_export(gw: Env, tmp_path: Path) -> None:
    auth = ["--url", gw.url, "--key", gw.owner_key]
    source = tmp_path / "catalog.yaml"
    source.write_text(CATALOG)
    assert "3 created, 0 updated" in _ok(["registry", "catalog", "import", str(source), *auth])

    search = ["registry", "catalog", "search", "--json", *auth]
    assert _names(_ok(search)) == ["tiny-no-tools", "small-tools", "big-tools"]
    assert _names(_ok([*search, "--capability", "tools"])) == ["small-tools", "big-tools"]
    narrowed = [*search, "--capability", "tools", "--min-context", "64000"]
    assert _names(_ok(narrowed)) == ["big-tools"]
    assert _names(_ok([*search, "--max-cost", "0.001"])) == ["tiny-no-tools", "small-tools"]
    assert _names(_ok([*search, "--no-commercial"])) == ["tiny-no-tools"]
    licensed = [*search, "--licence", "apache-2.0", "--licence", "proprietary"]
    assert _names(_ok([*licensed, "--order", "context"])) == ["big-tools", "small-tools"]
    table = _ok(["registry", "catalog", "search", "--capability", "tools", *auth])
    assert "fake/model-big" in table and "128,000" in table and "apache-2.0" in table

    # export writes a file that imports back unchanged
    exported = tmp_path / "out" / "catalog.yaml"
    exported.parent.mkdir()
    _ok(["registry", "catalog", "export", "-o", str(exported), *auth])
    models = yaml.safe_load(exported.read_text())["models"]
    assert sorted(m["name"] for m in models) == ["big-tools", "small-tools", "tiny-no-tools"]
    again = _ok(["registry", "catalog", "import", str(exported), "--replace", *auth])
    assert "0 created, 3 updated, 0 deleted" in again
    # a symlink at the output is replaced, never written through
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    link = tmp_path / "out" / "link.yaml"
    link.symlink_to(target)
    _ok(["registry", "catalog", "export", "-o", str(link), *auth])
    assert target.read_text() == "keep" and not link.is_symlink()

    # a bad file: the server's problem names the field; no traceback
    bad = yaml.safe_load(CATALOG)
    bad["models"][1]["constraints"]["max_context_tokens"] = -5
    source.write_text(yaml.safe_dump(bad))
    result = runner.invoke(app, ["registry", "catalog", "import", str(source), *auth])
    assert result.exit_code == 1
    assert "models.1.constraints.max_context_tokens" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    missing = runner.invoke(app, ["registry", "catalog", "import", str(tmp_path / "no"), *auth])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_models_upload_promote_approve_rollback(gw: Env, tmp_path: Path) -> None:
    auth = ["--url", gw.url, "--key", gw.owner_key]
    gw.provider()
    _ok(["registry", "models", "create", "support-model", "--description", "Answers", *auth])
    first = ["registry", "models", "version", "support-model", "--provider", "fake"]
    out = _ok([*first, "--model", "model-one", "--param", "temperature=0.2", "-m", "one", *auth])
    assert "support-model v1" in out
    out = _ok(
        ["registry", "models", "version", "support-model", "--route", "other", *auth]
        + ["--metadata", "owner=search"]
    )
    assert "support-model v2" in out
    v1 = gw.admin.get("/api/registry/models/support-model/versions/1").json()
    assert v1["body"]["params"] == {"temperature": 0.2} and v1["message"] == "one"
    v2 = gw.admin.get("/api/registry/models/support-model/versions/2").json()
    assert v2["body"]["source"] == {"kind": "route", "route": "other"}
    assert v2["metadata"] == {"owner": "search"}
    # one source, checked before any request
    both = runner.invoke(app, [*first, "--model", "m", "--route", "r", *auth])
    assert both.exit_code == 2 and "one source" in both.output
    # the server names what it refuses
    nope = runner.invoke(app, ["registry", "models", "version", "ghost", "--route", "r", *auth])
    assert nope.exit_code == 1 and "ghost" in nope.output

    data = safetensors(16)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(data)
    out = _ok(["registry", "upload", str(weights), *auth])
    assert hashlib.sha256(data).hexdigest() in out and "safetensors" in out
    blobs = gw.admin.get("/api/registry/artifacts").json()
    assert [(b["name"], b["size"]) for b in blobs] == [("model.safetensors", len(data))]
    pickle = tmp_path / "model.pkl"
    pickle.write_bytes(b"\x80\x04K\x01.")
    refused = runner.invoke(app, ["registry", "upload", str(pickle), *auth])
    assert refused.exit_code == 1 and "error:" in refused.output

    # dev needs no second person; production does
    out = _ok(["registry", "promote", "support-model", "1", "dev", *auth])
    assert "-> dev: approved" in out
    out = _ok(["registry", "promote", "support-model", "1", "production", "--note", "ready", *auth])
    assert "-> production: pending" in out
    pending = json.loads(_ok(["registry", "promotions", "--state", "pending", "--json", *auth]))
    assert [(p["environment"], p["version"]) for p in pending] == [("production", 1)]
    pid = pending[0]["id"]
    assert pid in _ok(["registry", "promotions", *auth])

    # an API key is not a person: the server's message, no traceback
    refused = runner.invoke(app, ["registry", "approve", pid, *auth])
    assert refused.exit_code == 1 and "needs a person" in refused.output
    assert "Traceback" not in refused.output
    approver = person(gw, "bo@example.com", "admin")
    r = approver.post(f"/api/registry/promotions/{pid}/approve", json={"note": "lgtm"})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text

    # v2 to production, then rejected through the CLI (an approver's key may reject)
    _ok(["registry", "promote", "support-model", "2", "production", *auth])
    second = json.loads(_ok(["registry", "promotions", "--state", "pending", "--json", *auth]))
    assert "rejected" in _ok(["registry", "reject", second[0]["id"], "--note", "no", *auth])
    _ok(["registry", "promote", "support-model", "2", "production", *auth])
    third = json.loads(_ok(["registry", "promotions", "--state", "pending", "--json", *auth]))
    assert approver.post(f"/api/registry/promotions/{third[0]['id']}/approve", json={}).is_success

    shown = _ok(["registry", "models", "show", "support-model", *auth])
    assert "fake/model-one" in shown and "route: other" in shown
    assert "four eyes" in shown  # production's policy
    listed = _ok(["registry", "models", "list", *auth])
    assert "dev=v1" in listed and "production=v2" in listed

    out = _ok(["registry", "rollback", "support-model", "production", *auth])
    assert "support-model@production -> v1" in out
    aliases = gw.admin.get("/api/registry/models/support-model").json()["aliases"]
    assert aliases == {"dev": 1, "production": 1}
    # nothing earlier to go back to: the server's problem
    again = runner.invoke(app, ["registry", "rollback", "support-model", "dev", *auth])
    assert again.exit_code == 1 and "error:" in again.output
