"""Datasets and runs from the SDK (sync and async) and the CLI, against the real app on
loopback and a scripted upstream that echoes (`echo: <text>`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli.main import app
from shipyard.sdk import AsyncClient, Client, ShipyardAPIError
from tests.gateway.conftest import Env, make_env

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support")
        yield e


def test_the_sdk_creates_uploads_runs_waits_and_compares(env: Env, tmp_path: Path) -> None:
    with Client(env.url, env.owner_key) as c:
        ds = c.datasets.create(
            "qa", [{"inputs": {"input": "a"}, "expected": "echo: a"}], description="d"
        )
        assert ds.latest == 1 and ds.item_count == 1
        csv = tmp_path / "more.csv"
        csv.write_text("input,expected\nb,echo: b\nc,wrong\n")
        v = c.datasets.upload("qa", csv)
        assert (v.version, v.item_count) == (2, 3)
        items = c.datasets.items("qa").items
        assert [i.expected for i in items] == ["echo: a", "echo: b", "wrong"]
        c.datasets.change("qa", update=[{"id": items[2].id, "expected": "echo: c"}])
        assert [v.version for v in c.datasets.versions("qa")] == [3, 2, 1]
        assert len(c.datasets.export("qa", format="openai").splitlines()) == 3

        seen: list[int] = []
        first = c.evals.run("route:support", "qa", ["exact_match"], dataset_version=2)
        first = c.evals.wait(first.id, poll=0.1, on_progress=lambda r: seen.append(r.done))
        assert first.status == "completed" and seen[-1] == 3
        assert first.aggregates["scores"]["exact_match"]["mean"] == pytest.approx(2 / 3)
        second = c.evals.wait(c.evals.run("support", "qa", ["exact_match"]).id, poll=0.1)
        assert second.aggregates["scores"]["exact_match"]["mean"] == 1
        page = c.evals.results(first.id, failed=True)
        assert [r.inputs for r in page.items] == [{"input": "c"}]
        cmp = c.evals.compare(first.id, second.id)
        assert cmp["against"][0]["scores"]["exact_match"]["wins"] == 1
        assert [r.id for r in c.evals.list(dataset="qa")] == [second.id, first.id]

        with pytest.raises(ShipyardAPIError) as bad:
            c.evals.run("route:nope", "qa", ["exact_match"])
        assert bad.value.status == 400 and "target.ref" in bad.value.detail
        bad_csv = tmp_path / "bad.csv"
        bad_csv.write_text("input,expected\nx\n")
        with pytest.raises(ShipyardAPIError) as bad:
            c.datasets.upload("qa", bad_csv)
        assert "line 2" in bad.value.detail

    async def go() -> None:
        async with AsyncClient(env.url, env.owner_key) as ac:
            run = await ac.evals.run("route:support", "qa", ["contains"])
            run = await ac.evals.wait(run.id, poll=0.1)
            assert run.status == "completed" and run.done == 3
            assert (await ac.datasets.get("qa")).latest == 3

    asyncio.run(go())


def _cli(args: list[str], code: int = 0) -> str:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_uploads_runs_with_progress_compares_and_exports(env: Env, tmp_path: Path) -> None:
    auth = ["--url", env.url, "--key", env.owner_key]
    data = tmp_path / "qa.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"inputs": {"input": q}, "expected": f"echo: {q}" if q != "z" else "no"})
            for q in ("x", "y", "z")
        )
    )
    out = _cli(["datasets", "upload", "qa", str(data), "--create", *auth])
    assert "qa version 1: 3 added, 3 items" in out
    assert "qa" in _cli(["datasets", "list", *auth])

    out = _cli(
        [
            "eval", "run", "--target", "route:support", "--dataset", "qa",
            "--scorer", "exact_match", "--scorer", "bleu",
            "--config", 'bleu={"lowercase": true}', *auth,
        ]
    )  # fmt: skip
    assert "completed" in out and "3/3 items" in out
    assert "exact_match" in out and "0.667" in out and "bleu" in out
    runs = json.loads(_cli(["eval", "list", "--json", *auth]))
    assert runs[0]["scorers"][1]["config"]["lowercase"] is True

    second = json.loads(
        _cli(
            [
                "eval",
                "run",
                "--target",
                "support",
                "--dataset",
                "qa",
                "--scorer",
                "exact_match",
                "--json",
                *auth,
            ]
        )  # fmt: skip
    )
    out = _cli(["eval", "compare", runs[0]["id"], second["id"], *auth])
    assert "0/0/3" in out  # the same target: ties on every item

    exported = tmp_path / "train.jsonl"
    _cli(["datasets", "export", "qa", "--format", "openai", "-o", str(exported), *auth])
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "echo: x"}

    bad = _cli(["eval", "run", "--target", "route:support", "--dataset", "qa", "--scorer",
                "nope", *auth], code=1)  # fmt: skip
    assert "no scorer named 'nope'" in bad
    bad = _cli(["eval", "run", "--target", "support", "--dataset", "qa", "--scorer", "bleu",
                "--config", "bleu=[1]", *auth], code=2)  # fmt: skip
    assert "give a JSON object" in bad
