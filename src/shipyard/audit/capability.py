"""The append-only audit log (its table is part of the foundation migration)."""

from __future__ import annotations

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS

CAPABILITY = Capability(
    name="audit",
    order=20,
    permissions={"audit:read": ADMINS},
    routers=("shipyard.audit.router:router",),
    cli=(("audit", "shipyard.cli.audit:app"),),
)
