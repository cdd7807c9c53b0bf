"""`shipyard registry ...`: the model catalog, registered models and their versions,
artifact uploads, promotions and rollback.

    shipyard registry catalog import catalog.yaml
    shipyard registry catalog search --capability tools --min-context 32000 --max-cost 0.01
    shipyard registry models create support-model
    shipyard registry models version support-model --provider openai --model gpt-4o-mini
    shipyard registry promote support-model 3 production
    shipyard registry approve prm_...   # a person approves (in the UI): keys get a 403"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import (
    JsonOpt,
    KeyOpt,
    UrlOpt,
    client,
    console,
    err,
    fail,
    read_file,
    write_out,
)
from shipyard.registry.schemas import PromotionPublic

app = typer.Typer(help="The model registry: catalog, models, promotion.", no_args_is_help=True)
catalog_app = typer.Typer(help="The model catalog (YAML in and out, search).", no_args_is_help=True)
models_app = typer.Typer(help="Registered models and their versions.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(models_app, name="models")

MAX_CATALOG = 2 * 1024 * 1024  # the server's limit on one catalog file
PROGRESS_FROM = 8 * 1024 * 1024  # uploads larger than this show a progress bar
KindOpt = Annotated[
    Literal["model", "prompt", "release", "pipeline"],
    typer.Option("--kind", help="What is promoted."),
]
NoteOpt = Annotated[str, typer.Option("--note", help="A note kept with the decision.")]


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


# Catalog ---------------------------------------------------------------------------------


@catalog_app.command("import")
def catalog_import(
    file: Path,
    replace: Annotated[
        bool, typer.Option("--replace", help="Also delete entries the file omits.")
    ] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Import a catalog file (`models: [...]`), all or nothing; errors name the field."""
    text = read_file(file, "the catalog file", MAX_CATALOG)
    with client(url, key) as c:
        out = c.registry.import_catalog(text, replace=replace)
    console.print(f"{out.created} created, {out.updated} updated, {out.deleted} deleted")


@catalog_app.command("export")
def catalog_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """The workspace's entries as a catalog file (`catalog import` reads it back)."""
    with client(url, key) as c:
        text = c.registry.export_catalog()
    write_out(output, text, "the catalog")


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@catalog_app.command("search")
def catalog_search(
    capability: Annotated[
        list[str] | None, typer.Option("--capability", help="Needed (repeatable: all of).")
    ] = None,
    min_context: Annotated[
        int | None, typer.Option("--min-context", help="At least this many tokens.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="USD per 1k tokens, input + output.")
    ] = None,
    licence: Annotated[
        list[str] | None, typer.Option("--licence", help="Any of (repeatable).")
    ] = None,
    commercial: Annotated[
        bool | None, typer.Option("--commercial/--no-commercial", help="Commercial use.")
    ] = None,
    order: Annotated[
        Literal["cost", "latency", "context", "name"], typer.Option("--order")
    ] = "cost",
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Entries that match every filter given (cheapest first by default)."""
    with client(url, key) as c:
        rows = c.registry.catalog(
            capabilities=capability or [],
            min_context=min_context,
            max_cost=max_cost,
            licence=licence or [],
            commercial_use=commercial,
            order=order,
        )
    if as_json:
        _print_json([r.model_dump(mode="json") for r in rows])
        return
    t = Table()
    for col in ("name", "provider/model", "capabilities", "context", "$/1k in", "$/1k out"):
        t.add_column(col, justify="right" if col.startswith(("$", "context")) else "left")
    t.add_column("licence")
    for r in rows:
        cost, ctx = r.benchmarks.cost_per_1k, r.constraints.max_context_tokens
        t.add_row(
            Text(r.name + (" (builtin)" if r.builtin else "")),
            Text(f"{r.provider or '-'}/{r.model or '-'}"),
            Text(", ".join(r.capabilities) or "-"),
            f"{ctx:,}" if ctx else "-",
            _money(cost.input if cost else None),
            _money(cost.output if cost else None),
            Text(r.constraints.licence or "-"),
        )
    console.print(t)


# Models ----------------------------------------------------------------------------------


@models_app.command("list")
def models_list(as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Registered models with their latest version and aliases."""
    with client(url, key) as c:
        rows = c.registry.models()
    if as_json:
        _print_json([r.model_dump(mode="json") for r in rows])
        return
    t = Table()
    for col in ("model", "latest", "aliases", "updated"):
        t.add_column(col)
    for r in rows:
        aliases = ", ".join(f"{a}=v{n}" for a, n in sorted(r.aliases.items())) or "-"
        latest = f"v{r.latest}" if r.latest else "-"
        t.add_row(Text(r.name), latest, Text(aliases), r.updated_at.strftime("%Y-%m-%d %H:%M"))
    console.print(t)


def _source(body: dict[str, Any]) -> str:
    source = body.get("source") or {}
    kind = source.get("kind", "?")
    if kind == "provider":
        return f"{source.get('provider')}/{source.get('model')}"
    if kind in ("route", "catalog"):
        return f"{kind}: {source.get('route') or source.get('entry')}"
    return str(kind)


@models_app.command("show")
def models_show(
    name: str, as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None
) -> None:
    """A model's versions (with their aliases) and its alias per environment."""
    with client(url, key) as c:
        asset = c.registry.model(name)
        versions = c.registry.versions(name)
        policies = c.registry.policies()
    if as_json:
        data = asset.model_dump(mode="json")
        data["versions"] = [v.model_dump(mode="json") for v in versions]
        _print_json(data)
        return
    console.print(Text(asset.name, style="bold") + Text(f"  {asset.description}".rstrip()))
    t = Table(title="versions")
    for col in ("version", "source", "aliases", "message", "author", "created"):
        t.add_column(col)
    for v in versions:
        t.add_row(
            f"v{v.number}",
            Text(_source(v.body)),
            Text(", ".join(v.aliases) or "-"),
            Text(v.message or "-"),
            Text(v.author),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(t)
    envs = [p.environment for p in policies]
    t = Table(title="aliases")
    for col in ("alias", "version", "approval"):
        t.add_column(col)
    for p in policies:
        number = asset.aliases.get(p.environment)
        approval = "four eyes" if p.four_eyes else "none"
        if p.gates:
            approval += f"; gates: {', '.join(sorted(p.gates))}"
        t.add_row(Text(p.environment), f"v{number}" if number else "-", Text(approval))
    for alias, number in sorted(asset.aliases.items()):
        if alias not in envs:
            t.add_row(Text(alias), f"v{number}", "custom")
    console.print(t)


@models_app.command("create")
def models_create(
    name: str,
    description: Annotated[str, typer.Option("--description", help="What it is for.")] = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Register a model (its versions come with `models version`)."""
    with client(url, key) as c:
        asset = c.registry.create_model(name, description)
    console.print(Text(f"created {asset.name}", style="bold"))


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    """key=value options; a value that reads as JSON (a number, true, a list) is kept
    as that, anything else as the string."""
    out: dict[str, Any] = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq or not k:
            fail(f"{option} {item!r}: expected key=value")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


@models_app.command("version")
def models_version(
    name: str,
    provider: Annotated[str | None, typer.Option("--provider", help="A gateway provider.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The provider's model id.")] = None,
    route: Annotated[str | None, typer.Option("--route", help="A gateway route.")] = None,
    catalog: Annotated[str | None, typer.Option("--catalog", help="A catalog entry.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="key=value.")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", help="key=value.")] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="The commit message.")] = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Add an immutable version served by a provider's model, a route or a catalog entry."""
    given = [opt for opt, v in (("--provider", provider), ("--route", route)) if v]
    given += ["--catalog"] if catalog else []
    if len(given) != 1:
        fail("give one source: --provider P --model M, --route R, or --catalog E")
    source: dict[str, Any]
    if provider:
        if not model:
            fail("--model: --provider needs the provider's model id")
        source = {"kind": "provider", "provider": provider, "model": model}
    elif model:
        fail("--model goes with --provider")
    elif route:
        source = {"kind": "route", "route": route}
    else:
        source = {"kind": "catalog", "entry": catalog}
    params, meta = _pairs(param, "--param"), _pairs(metadata, "--metadata")
    with client(url, key) as c:
        version = c.registry.add_version(name, source, params, meta, message)
    console.print(Text(f"{version.name} v{version.number}", style="bold"))


# Artifacts -------------------------------------------------------------------------------


@app.command("upload")
def upload(
    file: Path,
    name: Annotated[
        str | None, typer.Option("--name", help="Its name (default: the file's).")
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Upload a file (streamed) to the artifact store; prints its sha256."""
    try:
        size = file.stat().st_size
        if not file.is_file():
            fail(f"{file}: not a file")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    with client(url, key) as c:
        if size < PROGRESS_FROM:
            out = c.registry.upload(file, name)
        else:
            columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("upload", total=size)
                out = c.registry.upload(
                    file, name, progress=lambda sent: bar.update(task, completed=sent)
                )
    err.print(f"{out.name} ({out.format}, {out.size:,} bytes)")
    console.print(out.sha256, highlight=False)


# Promotion -------------------------------------------------------------------------------


def _promotion(p: PromotionPublic) -> None:
    line = f"{p.id}: {p.kind} {p.name} v{p.version} -> {p.environment}: {p.state}"
    console.print(Text(line, style="bold"))
    for g in p.gates:
        mark = Text(
            "  ok " if g.get("passed") else "  failed ", style="green" if g.get("passed") else "red"
        )
        console.print(mark + Text(f"{g.get('gate')}: {g.get('detail', '')}"))


@app.command("promote")
def promote(
    name: str,
    version: int,
    environment: str,
    kind: KindOpt = "model",
    note: NoteOpt = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Ask to point ENVIRONMENT at a version (pending where a person must approve)."""
    with client(url, key) as c:
        out = c.registry.promote(name, version, environment, kind=kind, note=note)
    _promotion(out)
    if out.state == "pending":
        err.print(f"waiting for an approver: shipyard registry approve {out.id} (a person)")


@app.command("promotions")
def promotions(
    state: Annotated[
        Literal["pending", "approved", "rejected", "cancelled"] | None,
        typer.Option("--state", help="Only these."),
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Promotion requests, newest first."""
    with client(url, key) as c:
        rows = c.registry.promotions(state)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in rows])
        return
    t = Table()
    for col in ("id", "asset", "version", "environment", "state", "requested by", "created"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r.id,
            Text(f"{r.kind} {r.name}"),
            f"v{r.version}",
            Text(r.environment),
            r.state,
            Text(r.requested_by),
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(t)


@app.command("approve")
def approve(id: str, note: NoteOpt = "", url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Approve a pending promotion (a person other than the requester; the alias moves)."""
    with client(url, key) as c:
        out = c.registry.approve(id, note)
    _promotion(out)


@app.command("reject")
def reject(id: str, note: NoteOpt = "", url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Reject a pending promotion."""
    with client(url, key) as c:
        out = c.registry.reject(id, note)
    _promotion(out)


@app.command("rollback")
def rollback(
    name: str, alias: str, kind: KindOpt = "model", url: UrlOpt = None, key: KeyOpt = None
) -> None:
    """Point ALIAS back at the version it pointed at before (one call; audited)."""
    with client(url, key) as c:
        out = c.registry.rollback(name, alias, kind=kind)
    console.print(Text(f"{out.name}@{alias} -> v{out.aliases.get(alias, '?')}", style="bold"))
