"""`shipyard demo closed-loop` in its quick form: its own server, the generated task, a
traffic through the gateway corrected by a reviewer, a dataset made of those traces,
a real fine-tune of a few steps on it, the validation against the base. So few steps rarely
make the model better with significance: the demo then says so and stops before the
promotion (the canary's decisions are tested in tests/serving); when they do, it runs
to the end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from shipyard.app import create_app
from shipyard.cli.main import app
from shipyard.settings import load_settings
from tests.support import form_login

pytestmark = [pytest.mark.local_model, pytest.mark.training]


def test_the_closed_loop_demo_runs(
    monkeypatch: pytest.MonkeyPatch, training_bases: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("SHIPYARD_TRAINING_BASES", str(training_bases))
    monkeypatch.setenv("SHIPYARD_LOCAL_THREADS", "1")
    home = tmp_path / "home"
    done = CliRunner().invoke(
        app,
        ["demo", "closed-loop", "--train", "16", "--held-out", "8", "--epochs", "1",
         "--threads", "1", "--home", str(home)],
    )  # fmt: skip
    out = " ".join(done.output.split())
    assert "2. traffic: 16 support e-mails answered by production" in out, done.output
    assert "support-corrections v1: 16 items from traces" in out, done.output
    assert "v1 → production: requested, approved by reviewer@example.com" in out, done.output
    assert "made ft:smollm2:support:" in out, done.output
    assert "5. validation before deploy" in out and "95% interval" in out, done.output
    if done.exit_code == 1:
        assert "not better with significance: stopping here" in out, done.output
    else:
        assert done.exit_code == 0 and "rolled_back" in out, done.output

    # the data stays in --home, and the login it prints opens the loop's page there
    found = re.search(r"then (/serving/models/\S+) \(login (\S+), password (\S+)\)", out)
    assert found, done.output
    page, email, password = found.groups()
    made = create_app(load_settings(home=home))
    with TestClient(made, base_url="http://localhost", follow_redirects=False) as c:
        assert form_login(c, email, password).status_code == 303
        flow = c.get(page)
        assert flow.status_code == 200 and "support-corrections" in flow.text
