"""The append-only audit log (its table is part of the foundation migration)."""

from __future__ import annotations

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, PLATFORM

CAPABILITY = Capability(
    name="audit",
    order=20,
    permissions={
        "audit:read": ADMINS,
        "audit:unscoped": PLATFORM,  # also entries of no workspace (anonymous denials...)
    },
    routers=("shipyard.audit.router:router",),
    cli=(("audit", "shipyard.cli.audit:app"),),
)
