"""`shipyard pipelines` against a real server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from shipyard.cli.main import app
from tests.support import live_server

runner = CliRunner()

SPEC = """\
inputs:
  n: {type: integer}
  word: {type: string}
steps:
  - id: out
    type: output
    value: {n: $inputs.n, word: $inputs.word}
"""


def test_validate_push_list_invoke_diff(sqlite_client: TestClient, tmp_path: Path) -> None:
    key = sqlite_client.headers["Authorization"].split(" ", 1)[1]
    source = tmp_path / "echo.yaml"
    source.write_text(SPEC)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - {id: a, type: output, value: $steps.b}\n")
    with live_server(sqlite_client.app) as url:
        auth = ["--url", url, "--key", key]
        ok = runner.invoke(app, ["pipelines", "validate", str(source), *auth])
        assert ok.exit_code == 0 and "ok: 1 steps" in ok.output, ok.output
        refused = runner.invoke(app, ["pipelines", "validate", str(bad), *auth])
        assert refused.exit_code == 1 and "step 'a': $steps.b names no step" in refused.output
        pushed = runner.invoke(app, ["pipelines", "push", str(source), "--name", "echo", *auth])
        assert pushed.exit_code == 0 and "echo@v1" in pushed.output, pushed.output
        source.write_text(SPEC.replace("word: $inputs.word", "w: $inputs.word"))
        runner.invoke(app, ["pipelines", "push", str(source), "--name", "echo", *auth])
        listed = runner.invoke(app, ["pipelines", "list", "--json", *auth])
        assert json.loads(listed.output)[0]["latest"] == 2
        ran = runner.invoke(
            app, ["pipelines", "invoke", "echo@1", "-i", "n=3", "-i", "word=hi", "--json", *auth]
        )
        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.output)["output"] == {"n": 3, "word": "hi"}
        table = runner.invoke(app, ["pipelines", "invoke", "echo", "-i", "n=1", "-i", "word=x",
                                    *auth])  # fmt: skip
        assert table.exit_code == 0 and "out" in table.output and '"w": "x"' in table.output
        diff = runner.invoke(app, ["pipelines", "diff", "echo", "1", "2", *auth])
        assert "+    w: $inputs.word" in diff.output, diff.output
        wrong = runner.invoke(app, ["pipelines", "invoke", "echo", "-i", "n=x", *auth])
        assert wrong.exit_code == 1 and "inputs" in wrong.output
