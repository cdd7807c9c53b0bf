"""The platform's own faces: health, readiness, metrics, the OpenAPI document, and the
web UI shell (login, home, users, keys, audit pages)."""

from __future__ import annotations

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, HUMAN

CAPABILITY = Capability(
    name="system",
    order=0,
    permissions={
        "ui:view": HUMAN,
        "metrics:read": ADMINS,  # spans every workspace's routes
        "api:schema": HUMAN,
    },
    routers=("shipyard.http.system:router",),
    pages=("shipyard.ui.router:router",),
)
