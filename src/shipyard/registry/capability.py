"""The registry capability: the model catalog, registered models, prompts and releases
with immutable versions, aliases per environment, gated promotion (four eyes), and the
route resolvers through which gateway routes point at an alias or a catalog query."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, HUMAN, PLATFORM, Role

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.registry.service import Registry

WRITERS = frozenset({Role.owner, Role.admin, Role.developer})


def build(platform: Platform) -> Registry:
    from shipyard.registry.service import Registry

    return Registry(platform)


CAPABILITY = Capability(
    name="registry",
    order=55,  # its resolvers are on the platform before the gateway's first snapshot
    permissions={
        # apps read prompts (the SDK's client.prompts.get) and resolve aliases
        "registry:read": HUMAN | {Role.app},
        "registry:write": WRITERS,  # catalog entries, models, versions, custom aliases
        "registry:promote": WRITERS,  # request a promotion
        "registry:approve": ADMINS,  # approve or reject one, roll an alias back
        "registry:manage": ADMINS,  # environment policies (gates, four eyes), webhooks
        # webhooks at internal addresses reach beyond any workspace
        "registry:internal": PLATFORM,
    },
    routers=(
        # fixed paths first: /api/registry/{models|prompts|releases} would take them
        "shipyard.registry.api.catalog:router",
        "shipyard.registry.api.promotions:router",
        "shipyard.registry.api.webhooks:router",
        "shipyard.registry.api.prompts:router",
        "shipyard.registry.api.artifacts:router",
        "shipyard.registry.api.assets:router",
    ),
    pages=("shipyard.registry.pages:router",),
    cli=(("prompts", "shipyard.cli.prompts:app"), ("registry", "shipyard.cli.registry:app")),
    migrations="shipyard.registry:migrations",
    service=build,
)
