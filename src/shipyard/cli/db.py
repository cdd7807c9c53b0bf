"""`shipyard db ...`: metadata database maintenance."""

from __future__ import annotations

import typer

from shipyard.capability import migration_folders
from shipyard.cli.common import console, err

app = typer.Typer(help="Metadata database.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply pending migrations (also done on every start)."""
    from shipyard.errors import ConfigError
    from shipyard.settings import load_settings
    from shipyard.store import Database

    try:
        settings = load_settings()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    settings.prepare_home()
    db = Database(settings.sqlalchemy_url)
    try:
        db.upgrade(migration_folders())
    finally:
        db.close()
    console.print("database is up to date")
