"""`shipyard up`: start the platform with its embedded defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from shipyard.cli.common import err

if TYPE_CHECKING:
    from shipyard.app import ShipyardApp

_OVERRIDES = "_SHIPYARD_WORKER_OPTIONS"  # how the parent hands its options to workers


def up(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: Annotated[Path | None, typer.Option(help="Data directory (SHIPYARD_HOME).")] = None,
    config: Annotated[Path | None, typer.Option(help="Path to shipyard.yaml.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Processes serving one port (use every core); needs SHIPYARD_REDIS_URL "
            "when above 1, which shares limits, budgets, the cache and key revocations.",
        ),
    ] = 1,
) -> None:
    """Start Shipyard: gateway, API, web UI and metrics in one process (or N workers)."""
    import uvicorn

    from shipyard.app import create_app
    from shipyard.errors import ConfigError
    from shipyard.http.server import http_protocol
    from shipyard.platform import Platform
    from shipyard.settings import load_settings

    overrides: dict[str, Any] = {"host": host, "port": port, "home": home}
    try:
        settings = load_settings(config_file=config, **overrides)
        if workers > 1 and settings.redis_url is None:
            raise ConfigError(
                f"--workers {workers}: set redis_url (SHIPYARD_REDIS_URL); workers share "
                "limits, budgets, the response cache and key revocations through Redis"
            )
        if workers == 1:
            app = create_app(settings, serving=True)
        else:  # migrate and bootstrap once, here, before the workers start
            parent = Platform(settings)
            parent.start()
            parent.stop()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    if not settings.is_loopback:
        err.print(
            f"[yellow]warning:[/yellow] binding to {settings.host}: Shipyard is reachable from "
            "other machines. Put it behind TLS and set allowed_hosts."
        )
    plural = f", {workers} workers" if workers > 1 else ""
    err.print(
        f"Shipyard on http://{settings.host}:{settings.port}  (data: {settings.home}{plural})"
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "loop": "auto",
        "http": http_protocol(),
        "lifespan": "on",
        "proxy_headers": False,
        "server_header": False,
    }
    try:
        if workers == 1:
            tune()
            uvicorn.run(app, **options)
        else:
            os.environ[_OVERRIDES] = orjson.dumps(
                {"config_file": str(config) if config else None, **overrides}, default=str
            ).decode()
            uvicorn.run("shipyard.cli.up:worker_app", factory=True, workers=workers, **options)
    except ConfigError as exc:  # raised by the lifespan (e.g. a weak admin password)
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None


def tune() -> None:
    # Background threads (record writer, local models) must not hold the event loop up
    # for the default 5 ms switch interval.
    sys.setswitchinterval(0.0005)


def worker_app() -> ShipyardApp:
    """One worker's app (`--workers N`): the parent's options, read from the environment."""
    from shipyard.app import create_app
    from shipyard.settings import load_settings

    tune()
    given = orjson.loads(os.environ.get(_OVERRIDES, "{}"))
    config = given.pop("config_file", None)
    settings = load_settings(config_file=Path(config) if config else None, **given)
    return create_app(settings, serving=True)
