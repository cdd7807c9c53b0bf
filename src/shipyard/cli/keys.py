"""`shipyard keys create|list|revoke`"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, table

app = typer.Typer(help="API keys of the current workspace.", no_args_is_help=True)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
    json: JsonOpt = False,
) -> None:
    """Keys (never their secrets)."""
    with client(url, key) as c:
        rows = c.keys.list(include_revoked=all_)
    table(rows, ["id", "kid", "name", "role", "created_at", "expires_at", "revoked_at"], json)


@app.command()
def create(
    name: str,
    role: Annotated[str, typer.Option(help="app, viewer, developer, admin or owner")] = "app",
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    platform_admin: Annotated[
        bool, typer.Option(help="A platform administrator's key (needs one to mint it).")
    ] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Create a key; it is printed once."""
    from shipyard.store import utcnow

    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    with client(url, key) as c:
        created = c.keys.create(name, role=role, expires_at=expires, platform_admin=platform_admin)
    extra = ", platform administrator" if created.platform_admin else ""
    console.print(
        f"created key [bold]{created.name}[/bold] ({created.id}), role {created.role.value}{extra}"
    )
    console.print("Copy it now, it is shown once:")
    print(created.key)


@app.command()
def revoke(key_id: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Revoke a key by id (key_...)."""
    with client(url, key) as c:
        row = c.keys.revoke(key_id)
    console.print(f"revoked {row.name} ({row.id})")
