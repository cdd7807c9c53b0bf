"""`shipyard audit tail`"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from shipyard.audit.schemas import AuditEventPublic
from shipyard.cli.common import KeyOpt, UrlOpt, client, console

app = typer.Typer(help="Audit log.", no_args_is_help=True)


def _line(e: AuditEventPublic) -> str:
    colour = {"success": "green", "denied": "red", "failed": "yellow"}.get(e.outcome, "white")
    return (
        f"{e.at:%Y-%m-%d %H:%M:%S} [{colour}]{e.outcome:<7}[/{colour}] {e.status} "
        f"{e.actor} {e.action} {e.target} {e.client_addr} {e.detail}"
    )


@app.command()
def tail(
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, max=1000)] = 20,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new entries.")
    ] = False,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    interval: Annotated[float, typer.Option(min=0.2)] = 2.0,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Print the latest audit entries, oldest first."""
    with client(url, key) as c:
        rows = c.audit.list(actor=actor, action=action, outcome=outcome, limit=limit)
        for e in reversed(rows):
            console.print(_line(e), highlight=False)
        last = rows[0].id if rows else 0
        while follow:
            time.sleep(interval)
            fresh = [
                e
                for e in c.audit.list(actor=actor, action=action, outcome=outcome, limit=200)
                if e.id > last
            ]
            for e in reversed(fresh):
                console.print(_line(e), highlight=False)
            if fresh:
                last = fresh[0].id
