"""Entry point: assembles the command groups."""

from __future__ import annotations

import typer

from shipyard.cli import audit, db, gateway, keys, up, users, workspaces

app = typer.Typer(
    name="shipyard",
    help="Shipyard: self-hosted LLMOps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(up.up)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(workspaces.app, name="workspaces")
app.add_typer(audit.app, name="audit")
app.add_typer(gateway.app, name="gateway")


def main() -> None:
    app()
