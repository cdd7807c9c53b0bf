"""A LiteLLM proxy config becomes Shipyard providers and routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import OpenAI
from typer.testing import CliRunner

from shipyard.cli.main import app
from tests.gateway.conftest import Env

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}
      api_key: os.environ/FAKE_OPENAI_KEY
      weight: 3
      timeout: 30
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o-2024-08-06
      api_base: {base}
      api_key: os.environ/FAKE_OPENAI_KEY
      rpm: 100
  - model_name: cheap
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: os.environ/FAKE_OPENAI_KEY
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-haiku-latest
      api_base: {root}
      api_key: sk-ant-xyz
router_settings:
  routing_strategy: least-busy
  num_retries: 1
  allowed_fails: 3
litellm_settings:
  fallbacks: [{{"gpt-4o": ["cheap"]}}]
  context_window_fallbacks: [{{"cheap": ["gpt-4o"]}}]
"""


def test_import_with_the_cli(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(base=env.upstream.url, root=env.upstream.root))
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-from-env")
    auth = ["--url", env.url, "--key", env.owner_key]
    runner = CliRunner()
    dry = runner.invoke(app, ["gateway", "import-litellm", str(path), "--dry-run", *auth])
    assert dry.exit_code == 0, dry.output
    assert "would import 2 providers, 3 routes" in dry.output and "rpm" in dry.output
    assert env.admin.get("/api/gateway/providers").json() == []

    refused = runner.invoke(app, ["gateway", "import-litellm", str(path), *auth])
    assert refused.exit_code != 0 and "allow_internal" in refused.output  # loopback
    done = runner.invoke(app, ["gateway", "import-litellm", str(path), "--allow-internal", *auth])
    assert done.exit_code == 0, done.output
    routes = {r["name"]: r for r in env.admin.get("/api/gateway/routes").json()}
    gpt = routes["gpt-4o"]
    assert gpt["strategy"] == "least_busy" and gpt["retries"] == 1
    assert gpt["fallbacks"] == {"any": ["cheap"]}
    assert routes["cheap"]["fallbacks"] == {"context_length": ["gpt-4o"]}
    assert sorted(d["weight"] for d in gpt["deployments"]) == [1.0, 3.0]
    assert routes["claude"]["deployments"][0]["model"] == "claude-3-5-haiku-latest"

    key, _ = env.key()
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(
        model="cheap", messages=[{"role": "user", "content": "x"}]
    ).choices
    assert env.upstream.headers[-1]["Authorization"] == "Bearer sk-from-env"
    listing = runner.invoke(app, ["gateway", "routes", *auth])
    assert "claude" in listing.output and "healthy" in listing.output


def test_bad_configs_are_refused(env: Env) -> None:
    r = env.admin.post("/api/gateway/import/litellm", json={"config": {"nope": 1}})
    assert r.status_code == 400 and "model_list" in r.json()["detail"]
    r = env.admin.post(
        "/api/gateway/import/litellm",
        json={
            "config": {
                "model_list": [
                    {
                        "model_name": "x",
                        "litellm_params": {
                            "model": "openai/x",
                            "api_base": "http://169.254.169.254",
                        },
                    }
                ]
            }
        },
    )
    assert r.status_code == 400 and "metadata" in r.json()["detail"]
