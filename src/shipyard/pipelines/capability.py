"""The pipelines capability: versioned, declarative pipelines of steps (render a
registry prompt, retrieve from a knowledge base, call a model route, call a tool,
branch, map, shape the output), checked on save, versioned in the registry with
aliases, served at `/api/pipelines/{ref}/invoke` and as `pipeline:<ref>` models on
`/v1/chat/completions`, traced a span per step, and evaluated like any target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.capability import Capability
from shipyard.identity.roles import CALLERS, HUMAN, Role

if TYPE_CHECKING:
    from shipyard.pipelines.service import Pipelines
    from shipyard.platform import Platform

WRITERS = frozenset({Role.owner, Role.admin, Role.developer})


def build(platform: Platform) -> Pipelines:
    from shipyard.pipelines.service import Pipelines

    return Pipelines(platform)


CAPABILITY = Capability(
    name="pipelines",
    order=80,  # after the gateway, the registry, tracing and retrieval, which steps use
    permissions={
        "pipelines:read": HUMAN,
        "pipelines:write": WRITERS,  # new versions (aliases move through the registry)
        # an invocation's steps call the gateway and search as the caller
        "pipelines:invoke": CALLERS,
    },
    routers=("shipyard.pipelines.api.routes:router",),
    pages=("shipyard.pipelines.pages:router",),
    cli=(("pipelines", "shipyard.cli.pipelines:app"),),
    service=build,
)
