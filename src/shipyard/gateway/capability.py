"""The gateway capability: `/v1` (OpenAI- and Anthropic-shaped), its admin API and
pages, its tables, and the `Gateway` service every other capability calls models with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, CALLERS, HUMAN, PLATFORM

if TYPE_CHECKING:
    from shipyard.gateway.core.service import Gateway
    from shipyard.platform import Platform


def build(platform: Platform) -> Gateway:
    from shipyard.gateway.core.balancer import Balancer
    from shipyard.gateway.core.executor import RetryPolicy
    from shipyard.gateway.core.service import Gateway

    settings = platform.settings
    counters = cache = None
    if settings.redis_url is not None:
        from shipyard.gateway.backends.redis import RedisCache, RedisCounters, connect

        client = connect(settings.redis_url)
        counters, cache = RedisCounters(client), RedisCache(client)
    return Gateway(
        db=platform.db,
        box=platform.box,
        plugins=platform.plugins,
        registry=platform.metrics.registry,
        sinks=platform.call_sinks,
        resolvers=platform.route_resolvers,
        prompt_sources=platform.prompt_sources,
        counters=counters,
        cache=cache,
        retry=RetryPolicy(base=settings.gateway_retry_base_seconds),
        balancer=Balancer(
            failures=settings.gateway_cooldown_failures,
            cooldown=settings.gateway_cooldown_seconds,
        ),
        local_threads=settings.local_threads,
        local_replicas=settings.local_replicas,
        local_engine=settings.local_engine,
        local_slots=settings.local_slots,
        llama_server=settings.llama_server,
        ray_address=settings.ray_address,
        probe_interval=settings.gateway_probe_seconds,
        ledger_interval=settings.gateway_ledger_seconds,
        records_dir=settings.home / "wal" / "records",
        records_fsync=settings.gateway_records_fsync_seconds,
    )


def v1(platform: Platform) -> ASGIApp:
    from shipyard.gateway.api.messages import messages_handler
    from shipyard.gateway.api.v1 import GatewayApp

    return GatewayApp(
        platform.services["gateway"],
        platform.keys,
        platform.denials,
        edge=platform.edge,
        handlers={("POST", "/v1/messages"): messages_handler},
    )


CAPABILITY = Capability(
    name="gateway",
    order=50,
    permissions={
        "gateway:call": CALLERS,
        "gateway:read": HUMAN,
        "gateway:manage": ADMINS,
        # instance-wide: the price table is shared by every workspace; internal
        # addresses, files on the server's disk and the litellm library (the host's
        # environment) reach beyond any workspace
        "gateway:prices": PLATFORM,
        "gateway:internal": PLATFORM,
    },
    routers=("shipyard.gateway.api.admin:router",),
    pages=("shipyard.gateway.api.pages:router",),
    migrations="shipyard.gateway:migrations",
    service=build,
    mounts={"/v1/": v1},
    openapi="shipyard.gateway.core.openapi:document",
    cli=(("gateway", "shipyard.cli.gateway:app"),),
)
