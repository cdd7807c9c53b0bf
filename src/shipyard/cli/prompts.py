"""`shipyard prompts ...`: push a prompt file, pull one back, diff, render, list.

A prompt file is YAML (or JSON) in the shape a team writes by hand:

    name: support-answer
    template:
      type: chat
      messages:
        - {role: system, content: "You answer for {{ company }}."}
        - {role: user, content: "{{ question }}"}
    variables:
      company: {type: string, default: Acme}
      question: {type: string}
    model: support
    params: {temperature: 0.2}

`pull` writes that shape back, so pushing a pulled file makes an identical version."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import (
    JsonOpt,
    KeyOpt,
    UrlOpt,
    client,
    console,
    err,
    read_file,
    write_out,
)
from shipyard.cli.common import fail as _fail
from shipyard.errors import InvalidInput
from shipyard.registry import templates
from shipyard.registry.assets import NAME

app = typer.Typer(help="Prompts in the registry.", no_args_is_help=True)

FIELDS = ("name", "template", "variables", "model", "params")
MAX_FILE = 5 * 1024 * 1024
_NUMBER = re.compile(r"^v?([0-9]{1,9})$")


def _read(path: Path, what: str) -> Any:
    """A YAML or JSON file's data (YAML reads JSON too)."""
    text = read_file(path, what, MAX_FILE)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        _fail(f"{path} is neither YAML nor JSON{where}")


def load_prompt_file(path: Path) -> dict[str, Any]:
    """The file's prompt, checked here (the template parses, every variable it reads
    is declared) so a bad file fails before any request; errors name the field."""
    data = _read(path, "the prompt file")
    if not isinstance(data, dict):
        _fail(f"{path}: a prompt file is a mapping with {', '.join(FIELDS)}")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        _fail(f"{path}: unknown field(s) {', '.join(unknown)} (expected {', '.join(FIELDS)})")
    if "template" not in data:
        _fail(f"{path}: template: a prompt file needs a template")
    try:
        templates.parse_template({"template": data["template"], "variables": data.get("variables")})
    except InvalidInput as exc:
        _fail(f"{path}: {exc.detail}")
    if data.get("model") is not None and not isinstance(data["model"], str):
        _fail(f"{path}: model: must be a string (a route or model name)")
    if not isinstance(data.get("params") or {}, dict):
        _fail(f"{path}: params: must be a mapping")
    return data


def _split(ref: str) -> tuple[str, str]:
    name, _, selector = ref.partition("@")
    if not re.match(NAME, name):
        _fail(f"'{ref}' is not a prompt reference (name[@alias|@version])")
    return name, selector or "latest"


class _Literal(str):
    pass


def _block(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _block)


def _multiline(value: Any) -> Any:
    if isinstance(value, str) and "\n" in value:
        return _Literal(value)
    if isinstance(value, dict):
        return {k: _multiline(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_multiline(v) for v in value]
    return value


def prompt_file_text(name: str, body: dict[str, Any], header: str) -> str:
    data: dict[str, Any] = {"name": name, "template": body.get("template")}
    data["variables"] = body.get("variables") or {}
    if body.get("model") is not None:
        data["model"] = body["model"]
    if body.get("params"):
        data["params"] = body["params"]
    text = yaml.dump(
        _multiline(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return f"# {header}\n{text}"


@app.command("push")
def push(
    file: Path,
    name: Annotated[
        str | None, typer.Option("--name", help="The prompt (default: the file's).")
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="The commit message.")] = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Push a prompt file (YAML or JSON) as a new version; prints its number."""
    data = load_prompt_file(file)
    name = name or data.get("name")
    if not isinstance(name, str) or not re.match(NAME, name):
        _fail(f"{file}: name: give the prompt a name (in the file, or --name)")
    with client(url, key) as c:
        version = c.prompts.push(
            name,
            data["template"],
            variables=data.get("variables"),
            model=data.get("model"),
            params=data.get("params") or {},
            message=message,
        )
    console.print(Text(f"{version.name}@v{version.number}", style="bold"))


@app.command("pull")
def pull(
    ref: Annotated[str, typer.Argument(help="name[@alias|@version] (default: latest)")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Write a version as a prompt file (push it back to make an identical version)."""
    name, selector = _split(ref)
    with client(url, key) as c:
        version = c.prompts.resolve(f"{name}@{selector}")
    header = f"{version.name}@v{version.number}, pulled as {name}@{selector}"
    text = prompt_file_text(version.name, version.body, header)
    write_out(output, text, f"{version.name}@v{version.number}")


def _number(c: Any, name: str, selector: str) -> int:
    found = _NUMBER.match(selector)
    if found:
        return int(found[1])
    return int(c.prompts.resolve(f"{name}@{selector}").number)


@app.command("diff")
def diff(
    name: str,
    a: Annotated[str, typer.Argument(help="A version (3, v3) or an alias.")],
    b: Annotated[str, typer.Argument(help="A version (3, v3) or an alias.")],
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """The difference between two versions (template, variables, model, params)."""
    name, _ = _split(name)
    with client(url, key) as c:
        out = c.prompts.diff(name, _number(c, name, a), _number(c, name, b))
    if not out["diff"]:
        console.print(f"v{out['a']} and v{out['b']} are the same")
        return
    for line in out["diff"]:
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        elif " -> " in line:
            style = "yellow"
        console.print(Text(line, style=style), highlight=False)


def _coerce(value: str, spec: Any) -> Any:
    """A --var value as its variable's type (JSON for non-strings; else left as is,
    for the server to name)."""
    if not isinstance(spec, dict) or spec.get("type", "string") == "string":
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


@app.command("render")
def render(
    ref: Annotated[str, typer.Argument(help="name[@alias|@version] (default: latest)")],
    var: Annotated[list[str] | None, typer.Option("--var", help="key=value (repeatable).")] = None,
    vars_file: Annotated[
        Path | None, typer.Option("--vars", help="A JSON (or YAML) file of variables.")
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Render a version with variables, on the server (what the gateway would send)."""
    name, selector = _split(ref)
    variables: dict[str, Any] = {}
    if vars_file is not None:
        loaded = _read(vars_file, "the variables file")
        if not isinstance(loaded, dict):
            _fail(f"{vars_file}: variables are a mapping of name to value")
        variables.update(loaded)
    pairs = []
    for item in var or []:
        k, eq, v = item.partition("=")
        if not eq or not k:
            _fail(f"--var {item!r}: expected key=value")
        pairs.append((k, v))
    with client(url, key) as c:
        version = c.prompts.resolve(f"{name}@{selector}")
        schema = version.body.get("variables") or {}
        variables.update((k, _coerce(v, schema.get(k))) for k, v in pairs)
        out = c.prompts.render_remote(f"{name}@{version.number}", variables)
    if as_json:
        console.print_json(json.dumps(out))
        return
    rendered = out["rendered"]
    err.print(Text(f"{out['prompt']} (model {out['model'] or '-'})", style="dim"))
    if rendered["type"] == "text":
        console.out(rendered["text"] or "", highlight=False)
        return
    for message in rendered["messages"]:
        console.print(Text(f"[{message['role']}]", style="bold cyan"))
        console.out(message["content"], highlight=False)


@app.command("list")
def list_prompts(as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Prompts with their latest version and aliases."""
    with client(url, key) as c:
        rows = c.prompts.list()
    if as_json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    t = Table()
    for col in ("prompt", "latest", "aliases", "updated"):
        t.add_column(col)
    for r in rows:
        aliases = ", ".join(f"{a}=v{n}" for a, n in sorted(r.aliases.items())) or "-"
        t.add_row(r.name, f"v{r.latest}", aliases, r.updated_at.strftime("%Y-%m-%d %H:%M"))
    console.print(t)
