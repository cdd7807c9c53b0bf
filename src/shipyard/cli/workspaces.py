"""`shipyard workspaces ...`"""

from __future__ import annotations

import typer

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, table

app = typer.Typer(help="Workspaces (projects).", no_args_is_help=True)


@app.command("list")
def list_(url: UrlOpt = None, key: KeyOpt = None, json: JsonOpt = False) -> None:
    """Workspaces you can see."""
    with client(url, key) as c:
        table(c.workspaces.list(), ["slug", "name", "role", "environments", "created_at"], json)


@app.command()
def create(slug: str, name: str | None = None, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Create a workspace with dev, staging and production environments."""
    with client(url, key) as c:
        ws = c.workspaces.create(slug, name)
    console.print(f"created workspace [bold]{ws.slug}[/bold] ({ws.id})")
