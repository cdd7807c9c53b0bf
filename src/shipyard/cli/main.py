"""Entry point: `up` and `db`, plus every capability's command groups."""

from __future__ import annotations

import typer

from shipyard.capability import resolve
from shipyard.cli import db, up
from shipyard.plugins import Plugins

app = typer.Typer(
    name="shipyard",
    help="Shipyard: self-hosted LLMOps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(up.up)
app.add_typer(db.app, name="db")
for capability in Plugins().capabilities():
    for name, target in capability.cli:
        app.add_typer(resolve(target), name=name)


def main() -> None:
    app()
