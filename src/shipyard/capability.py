"""The shape every capability has. A capability (identity, audit, gateway; tracing,
registry, evaluation... as they arrive) is a package `shipyard/<name>/` that declares
itself once, in `shipyard/<name>/capability.py`, and registers that declaration under
the `shipyard.capabilities` entry-point group. `create_app` and `Platform` assemble the
list; neither names a capability.

    CAPABILITY = Capability(
        name="widgets",
        permissions={"widgets:read": HUMAN, "widgets:manage": ADMINS},
        routers=("shipyard.widgets.router:router",),        # /api/widgets...
        pages=("shipyard.widgets.pages:router",),           # web UI pages
        migrations="shipyard.widgets:migrations",           # a folder of Alembic revisions
        service=lambda platform: WidgetService(platform.db),  # start/stop, on the platform
        mounts={"/v1/widgets": lambda platform: widget_asgi(platform)},  # pure ASGI
        openapi="shipyard.widgets.wire:document",           # the mounts in /openapi.json
        cli=(("widgets", "shipyard.cli.widgets:app"),),
    )

Routers, pages and CLI groups are named as "module:attribute" so that reading the
declarations (the CLI does) imports no web framework code.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

if TYPE_CHECKING:
    from shipyard.platform import Platform


@dataclass(frozen=True)
class Capability:
    name: str
    order: int = 100  # start order; lower starts first, stops last
    permissions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    routers: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    migrations: str | None = None  # "package:folder" of Alembic revisions
    service: Callable[[Platform], Any] | None = None  # builds the capability's Service
    mounts: Mapping[str, Callable[[Platform], ASGIApp]] = field(default_factory=dict)
    cli: tuple[tuple[str, str], ...] = ()  # (group name, "module:typer app")
    # "module:function" returning OpenAPI paths and components for the mounts
    openapi: str | None = None


def resolve(target: str) -> Any:
    """'module:attribute' -> the attribute."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def migrations_folder(target: str) -> Path:
    package, _, folder = target.partition(":")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"migrations: package {package!r} not found")
    return Path(next(iter(spec.submodule_search_locations))) / folder


def migration_folders(capabilities: list[Capability] | None = None) -> list[Path]:
    """Every capability's folder of Alembic revisions (all registered ones by default)."""
    if capabilities is None:
        from shipyard.plugins import Plugins

        capabilities = Plugins().capabilities()
    return [migrations_folder(c.migrations) for c in capabilities if c.migrations]
