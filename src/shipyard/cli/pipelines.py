"""`shipyard pipelines ...`: validate and push a spec file, list, diff, invoke.

A spec file is the YAML a version holds (see `shipyard.pipelines.spec`); `validate`
checks it on the server without saving, naming the step at fault."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, fail, read_file, table
from shipyard.pipelines.yaml_spec import MAX_CHARS
from shipyard.registry.assets import NAME

app = typer.Typer(
    help="Pipelines: versioned specs of steps, served and traced.", no_args_is_help=True
)


def _yaml(path: Path) -> str:
    return read_file(path, "the spec file", MAX_CHARS * 4)


@app.command("validate")
def validate(file: Path, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Check a spec file without saving it."""
    with client(url, key) as c:
        checked = c.pipelines.validate(_yaml(file))
    console.print(Text(f"ok: {len(checked.steps)} steps, output '{checked.output}'", style="green"))


@app.command("push")
def push(
    file: Path,
    name: Annotated[str, typer.Option("--name", help="The pipeline's name.")],
    message: Annotated[str, typer.Option("--message", "-m", help="The commit message.")] = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Push a spec file (YAML) as a new version; prints its reference."""
    if not re.match(NAME, name):
        fail(f"--name: '{name}' is not a name ({NAME})")
    with client(url, key) as c:
        version = c.pipelines.push(name, _yaml(file), message=message)
    console.print(Text(f"{version.name}@v{version.number}", style="bold"))


@app.command("list")
def list_(url: UrlOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """The workspace's pipelines."""
    with client(url, key) as c:
        rows = c.pipelines.list()
    table(rows, ("name", "latest", "aliases", "steps", "updated_at"), as_json, "pipelines")


@app.command("diff")
def diff(name: str, a: int, b: int, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """A unified diff between two versions' specs."""
    with client(url, key) as c:
        out = c.pipelines.diff(name, a, b)
    for line in out.diff:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(Text(line, style=style or ""))


def _inputs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            fail(f"--input: '{pair}' is not name=value")
        try:  # a JSON value (a number, a list); else the text as given
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


@app.command("invoke")
def invoke(
    ref: Annotated[str, typer.Argument(help="name[@alias|@version]")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="name=value (repeatable)")
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a version; prints its output and each step's timing."""
    with client(url, key) as c:
        done = c.pipelines.invoke(ref, _inputs(inputs or []))
    if as_json:
        console.print_json(orjson.dumps(done.model_dump(mode="json")).decode())
        return
    t = Table(title=f"{done.pipeline} · trace {done.trace_id} · {done.ms:.1f} ms")
    for column in ("step", "type", "status", "ms", "attempts"):
        t.add_column(column)
    for s in done.steps:
        t.add_row(s.step, s.type, s.status, f"{s.ms:.1f}", str(s.attempts))
    console.print(t)
    output = done.output if isinstance(done.output, str) else json.dumps(done.output, indent=2)
    console.out(output, highlight=False)
