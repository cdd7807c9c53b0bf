"""`shipyard up`: start the platform with its embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.common import err


def up(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: Annotated[Path | None, typer.Option(help="Data directory (SHIPYARD_HOME).")] = None,
    config: Annotated[Path | None, typer.Option(help="Path to shipyard.yaml.")] = None,
) -> None:
    """Start Shipyard: gateway, API, web UI and metrics in one process."""
    import uvicorn

    from shipyard.app import create_app, serve
    from shipyard.errors import ConfigError
    from shipyard.http.server import http_protocol
    from shipyard.settings import load_settings

    try:
        settings = load_settings(config_file=config, host=host, port=port, home=home)
        app = create_app(settings)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    if not settings.is_loopback:
        err.print(
            f"[yellow]warning:[/yellow] binding to {settings.host}: Shipyard is reachable from "
            "other machines. Put it behind TLS and set allowed_hosts."
        )
    err.print(f"Shipyard on http://{settings.host}:{settings.port}  (data: {settings.home})")
    # Background threads (record writer, local models) must not hold the event loop up
    # for the default 5 ms switch interval.
    import sys

    sys.setswitchinterval(0.0005)
    # gc.freeze()  # what start-up built lives for the process: keep it out of every collection
    try:
        uvicorn.run(
            serve(app),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
            loop="auto",
            http=http_protocol(),
            lifespan="on",
            proxy_headers=False,
            server_header=False,
        )
    except ConfigError as exc:  # raised by the lifespan (e.g. a weak admin password)
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
