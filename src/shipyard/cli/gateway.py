"""`shipyard gateway ...`: routes, providers, request log, LiteLLM import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from shipyard.cli.common import KeyOpt, UrlOpt, client, console, err

app = typer.Typer(help="The LLM gateway.", no_args_is_help=True)


@app.command("routes")
def routes(url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Routes with their deployments and health."""
    from rich.table import Table

    with client(url, key) as c:
        rows = c.get("/api/gateway/routes")
    t = Table()
    for col in ("route", "kind", "strategy", "deployment", "provider", "model", "health"):
        t.add_column(col)
    for r in rows:
        for d in r["deployments"]:
            t.add_row(
                r["name"],
                r["kind"],
                r["strategy"],
                d["id"],
                d["provider"],
                d["model"],
                d["health"]["state"],
            )
    console.print(t)


@app.command("import-litellm")
def import_litellm(
    path: Path,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    allow_internal: Annotated[
        bool,
        typer.Option(
            "--allow-internal",
            help="Let the providers reach internal addresses (local model servers); "
            "platform administrators only.",
        ),
    ] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Import a LiteLLM proxy config.yaml (os.environ/ references are read here)."""
    from shipyard.gateway.config.litellm_import import resolve_env

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        err.print(f"[red]error:[/red] cannot read {path}: {exc.__class__.__name__}")
        raise typer.Exit(2) from None
    with client(url, key) as c:
        report = c.post(
            "/api/gateway/import/litellm",
            {"config": resolve_env(config)},
            params={
                "dry_run": str(dry_run).lower(),
                "allow_internal": str(allow_internal).lower(),
            },
        )
    verb = "would import" if dry_run else "imported"
    console.print(f"{verb} {len(report['providers'])} providers, {len(report['routes'])} routes")
    for r in report["routes"]:
        console.print(
            f"  route [bold]{r['name']}[/bold]: {r['deployments']} deployment(s), "
            f"{r['strategy']}, retries {r['retries']}"
        )
    for note in report["notes"]:
        console.print(f"  [yellow]note:[/yellow] {note}")
