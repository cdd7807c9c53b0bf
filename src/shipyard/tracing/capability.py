"""The tracing capability: OTLP ingest at `/v1/traces`, the trace store, and a span for
every gateway call (its service is a `CallSink`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, CALLERS, HUMAN, PLATFORM

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.tracing.service import Tracing


def build(platform: Platform) -> Tracing:
    from shipyard.tracing.service import Tracing

    return Tracing(platform)


def ingest(platform: Platform) -> ASGIApp:
    from shipyard.tracing.ingest import IngestApp

    return IngestApp(
        platform.services["tracing"], platform.keys, platform.denials, edge=platform.edge
    )


CAPABILITY = Capability(
    name="tracing",
    order=60,  # after the gateway: its calls' spans go to the trace store
    permissions={
        "traces:write": CALLERS,  # app keys send spans
        "traces:read": HUMAN,
        "tracing:manage": ADMINS,
        # alert webhooks at internal addresses reach beyond any workspace
        "tracing:internal": PLATFORM,
    },
    routers=(
        "shipyard.tracing.api.settings:router",
        "shipyard.tracing.api.traces:router",
        "shipyard.tracing.api.alerts:router",
        "shipyard.tracing.api.drift:router",
    ),
    # the alert and drift pages first: /traces/{trace_id} would take /traces/alerts
    pages=("shipyard.tracing.alert_pages:router", "shipyard.tracing.pages:router"),
    migrations="shipyard.tracing:migrations",
    service=build,
    mounts={"/v1/traces": ingest},
)
