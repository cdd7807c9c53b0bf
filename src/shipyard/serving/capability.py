"""The serving capability: canaries of registered model versions on gateway routes,
judged on live traffic by an online metric and rolled back or promoted automatically
(`canary.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, HUMAN

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.serving.canary import Canaries


def build(platform: Platform) -> Canaries:
    from shipyard.serving.canary import Canaries

    return Canaries(platform)


CAPABILITY = Capability(
    name="serving",
    order=90,  # after the gateway, the registry and feedback it reads and moves
    permissions={
        "serving:read": HUMAN,
        # a canary moves production traffic: an administrator's decision
        "serving:manage": ADMINS,
    },
    routers=("shipyard.serving.api:router",),
    pages=("shipyard.serving.pages:router",),
    migrations="shipyard.serving:migrations",
    service=build,
)
