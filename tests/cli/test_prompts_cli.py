"""`shipyard prompts` against a real server on loopback."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from starlette.testclient import TestClient
from typer.testing import CliRunner

from shipyard.cli.main import app
from tests.support import live_server

runner = CliRunner()

PROMPT = """\
name: support-answer
template:
  type: chat
  messages:
    - role: system
      content: |
        You answer for {{ company }}.
        Be brief.
    - {role: user, content: "{{ question }} ({{ tries }} tries)"}
variables:
  company: {type: string, default: Acme}
  question: {type: string, max_length: 500}
  tries: {type: integer}
model: support
params: {temperature: 0.2}
"""


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_push_pull_diff_render_list(sqlite_client: TestClient, tmp_path: Path) -> None:
    key = sqlite_client.headers["Authorization"].split(" ", 1)[1]
    source = tmp_path / "support.yaml"
    source.write_text(PROMPT)
    with live_server(sqlite_client.app) as url:
        auth = ["--url", url, "--key", key]
        assert "support-answer@v1" in _ok(["prompts", "push", str(source), "-m", "first", *auth])

        pulled = tmp_path / "pulled.yaml"
        _ok(["prompts", "pull", "support-answer@1", "-o", str(pulled), *auth])
        assert "|" in pulled.read_text()  # multi-line content stays readable
        assert yaml.safe_load(pulled.read_text())["name"] == "support-answer"
        # a pulled file pushed back is an identical version
        assert "support-answer@v2" in _ok(["prompts", "push", str(pulled), *auth])
        v1, v2 = (
            sqlite_client.get(f"/api/registry/prompts/support-answer/versions/{n}").json()
            for n in (1, 2)
        )
        assert v1["body"] == v2["body"]
        assert (
            _ok(["prompts", "pull", "support-answer", *auth]).split("\n", 1)[1]
            == (pulled.read_text().split("\n", 1)[1])
        )
        assert "are the same" in _ok(["prompts", "diff", "support-answer", "1", "v2", *auth])

        # a JSON file, under another name given on the command line
        changed = yaml.safe_load(PROMPT)
        changed["template"]["messages"][0]["content"] = "You answer kindly for {{ company }}.\n"
        changed["model"] = "support-large"
        other = tmp_path / "changed.json"
        other.write_bytes(orjson.dumps(changed))
        _ok(["prompts", "push", str(other), "--name", "support-answer", *auth])
        r = sqlite_client.put(
            "/api/registry/prompts/support-answer/aliases/champion", json={"version": 3}
        )
        assert r.status_code == 200, r.text
        out = _ok(["prompts", "diff", "support-answer", "1", "champion", *auth])
        assert "-You answer for {{ company }}." in out
        assert "+You answer kindly for {{ company }}." in out
        assert "[system]" in out  # printed as text, not read as rich markup
        assert "model: 'support' -> 'support-large'" in out

        out = _ok(
            [
                "prompts",
                "render",
                "support-answer@1",
                "--var",
                "question=Where is my order?",
                "--var",
                "tries=2",
                *auth,
            ]
        )
        assert "You answer for Acme.\nBe brief." in out
        assert "Where is my order? (2 tries)" in out
        variables = tmp_path / "vars.json"
        variables.write_text('{"company": "Beta", "question": "Refund?", "tries": 1}')
        out = _ok(["prompts", "render", "support-answer@champion", "--vars", str(variables), *auth])
        assert "You answer kindly for Beta." in out and "Refund? (1 tries)" in out
        # the server names a missing or mistyped variable
        bad = runner.invoke(app, ["prompts", "render", "support-answer", *auth])
        assert bad.exit_code == 1 and "variables.question" in bad.output
        bad = runner.invoke(
            app,
            [
                "prompts",
                "render",
                "support-answer",
                "--var",
                "question=q",
                "--var",
                "tries=x",
                *auth,
            ],
        )
        assert bad.exit_code == 1 and "variables.tries" in bad.output

        out = _ok(["prompts", "list", *auth])
        assert "support-answer" in out and "v3" in out and "champion=v3" in out

        missing = runner.invoke(app, ["prompts", "pull", "nope@production", *auth])
        assert missing.exit_code == 1 and "404" in missing.output


def test_bad_files_fail_before_any_request(tmp_path: Path) -> None:
    # nothing listens at this address: a request would be "cannot reach"
    auth = ["--url", "http://127.0.0.1:9", "--key", "sy-x-y"]
    cases = {
        "unclosed.yaml": (
            "name: p\ntemplate: {type: text, text: '{{ unclosed'}\n",
            "template.text",
        ),
        "role.yaml": (
            "name: p\ntemplate: {type: chat, messages: [{role: wizard, content: hi}]}\n",
            "template.messages.0.role",
        ),
        "undeclared.yaml": (
            "name: p\ntemplate: {type: text, text: '{{ a }} {{ b }}'}\nvariables: {a: {}}\n",
            "'b'",
        ),
        "typo.yaml": ("name: p\ntemplate: {type: text, text: hi}\nvaribles: {}\n", "varibles"),
        "notyaml.yaml": ("name: [p\n", "neither YAML nor JSON"),
        "list.json": ("[1, 2]", "mapping"),
        "noname.yaml": ("template: {type: text, text: hi}\n", "name"),
    }
    for filename, (text, expected) in cases.items():
        path = tmp_path / filename
        path.write_text(text)
        result = runner.invoke(app, ["prompts", "push", str(path), *auth])
        assert result.exit_code == 2, (filename, result.output)
        assert expected in result.output and "cannot reach" not in result.output, filename
        assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["prompts", "push", str(tmp_path / "absent.yaml"), *auth])
    assert (
        result.exit_code == 2 and "cannot read" in result.output and "absent.yaml" in result.output
    )
    assert isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["prompts", "render", "p", "--var", "novalue", *auth])
    assert result.exit_code == 2 and "key=value" in result.output
    result = runner.invoke(app, ["prompts", "pull", "../etc", *auth])
    assert result.exit_code == 2 and "not a prompt reference" in result.output
    result = runner.invoke(app, ["prompts", "list", *auth])
    assert result.exit_code == 1 and "cannot reach" in result.output


def test_pull_replaces_a_symlink_instead_of_writing_through_it(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    key = sqlite_client.headers["Authorization"].split(" ", 1)[1]
    source = tmp_path / "p.yaml"
    source.write_text("name: p\ntemplate: {type: text, text: 'Hi {{ who }}'}\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "out.yaml"
    link.symlink_to(victim)
    with live_server(sqlite_client.app) as url:
        auth = ["--url", url, "--key", key]
        _ok(["prompts", "push", str(source), *auth])
        _ok(["prompts", "pull", "p", "-o", str(link), *auth])
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and "Hi {{ who }}" in link.read_text()
