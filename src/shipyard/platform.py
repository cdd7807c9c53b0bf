"""The Platform: every long-lived object of one app instance, built by `create_app`.

It assembles the capabilities (registered under the `shipyard.capabilities` entry
points) without naming any: their permissions become the actors' grants, their
migrations run at start, and each capability's service is built here, started after
migrations in capability order and stopped in reverse. Routes reach a service as
`ctx.platform.services["gateway"]` (or `ctx.platform.gateway`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from shipyard.audit.denials import DenialLog
from shipyard.capability import Capability, migration_folders
from shipyard.crypto import SecretBox
from shipyard.http.metrics import Metrics
from shipyard.http.middleware import EdgeCheck
from shipyard.http.proxies import ProxyHeaders
from shipyard.identity.actor import Grants
from shipyard.identity.authn import KeyAuthenticator, SessionAuthenticator
from shipyard.identity.bootstrap import FirstStart, bootstrap
from shipyard.identity.throttle import HashGate, LoginThrottle
from shipyard.plugins import CallSink, MetricSource, Plugins, PromptSource, RouteResolver
from shipyard.settings import Settings
from shipyard.store import Database

log = logging.getLogger("shipyard")


class Platform:
    def __init__(
        self, settings: Settings, capabilities: Sequence[Capability] | None = None
    ) -> None:
        self.settings = settings
        settings.prepare_home()
        self.plugins = Plugins()
        self.capabilities = list(capabilities or self.plugins.capabilities())
        self.grants: Grants = grants_of(self.capabilities)
        self.db = Database(settings.sqlalchemy_url)
        self.metrics = Metrics()
        self.edge = EdgeCheck(
            allowed_hosts=hosts(settings),
            max_body_bytes=settings.max_body_bytes,
            large_bodies={
                "/api/registry/artifacts": settings.artifact_max_bytes,
                "/api/dataset-uploads/": settings.dataset_upload_max_bytes,
                "/api/kb-uploads/": settings.kb_upload_max_bytes,
                # a multipart body: the file and its few fields
                "/v1/files": settings.kb_upload_max_bytes + 64 * 1024,
            },
        )
        self.proxies = ProxyHeaders(settings.trusted_proxies)
        self.keys = KeyAuthenticator(self.db, self.grants, ttl=settings.key_cache_ttl_seconds)
        self.sessions = SessionAuthenticator(
            self.db, self.grants, ttl_hours=settings.session_ttl_hours
        )
        self.denials = DenialLog(self.db, self.metrics.denials)  # 401/403s, aggregated
        self.login_throttle = LoginThrottle()
        self.login_gate = HashGate(
            settings.login_hash_concurrency,
            self.metrics.password_checks,
            self.metrics.password_checks_peak,
        )
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.box = SecretBox(secret, settings.home / "secret.key")
        # every finished gateway call goes to each of these (tracing appends its own)
        self.call_sinks: list[CallSink] = []
        # route target kind -> its resolver (the registry sets "registry" and "catalog")
        self.route_resolvers: dict[str, RouteResolver] = {}
        # where `prompt: name@alias` references come from (the registry adds its own)
        self.prompt_sources: list[PromptSource] = []
        # metrics of other capabilities that alert rules can take (feedback scores)
        self.metric_sources: list[MetricSource] = []
        # panels the trace page loads (HTMX) below a trace: URL templates with
        # `{trace_id}` (feedback adds its own)
        self.trace_panels: list[str] = []
        # what else a registry version's lineage graph shows: (session, workspace id,
        # "kind:name@N") -> [(node id, kind, label)] the version is `evaluated_by`
        # (evaluation adds its runs)
        self.lineage_sources: list[Callable[[Any, str, str], list[tuple[str, str, str]]]] = []
        self.services: dict[str, Any] = {}
        for cap in self.capabilities:
            if cap.service is not None:
                self.services[cap.name] = cap.service(self)
        self.first_start: FirstStart | None = None
        self.started = False

    def __getattr__(self, name: str) -> Any:
        """`platform.gateway` is the gateway capability's service."""
        services = self.__dict__.get("services", {})
        if name in services:
            return services[name]
        raise AttributeError(name)

    def start(self) -> None:
        """Migrate the store and run the first-start bootstrap. Idempotent."""
        if self.started:
            return
        self.db.upgrade(migration_folders(self.capabilities))
        self.first_start = bootstrap(self.db, self.settings)
        if self.first_start is not None:
            announce(self.first_start)
        self.started = True

    async def start_services(self) -> None:
        await self.denials.start()
        for cap in self.capabilities:
            service = self.services.get(cap.name)
            if service is not None:
                await service.start()

    async def stop_services(self) -> None:
        for cap in reversed(self.capabilities):
            service = self.services.get(cap.name)
            if service is not None:
                await service.stop()
        await self.denials.stop()

    def stop(self) -> None:
        self.db.close()


def grants_of(capabilities: Sequence[Capability]) -> dict[str, frozenset[str]]:
    grants: dict[str, frozenset[str]] = {}
    for cap in capabilities:
        for permission, roles in cap.permissions.items():
            if permission in grants:
                raise RuntimeError(f"permission {permission!r} is declared twice ({cap.name})")
            grants[permission] = frozenset(roles)
    return grants


def hosts(settings: Settings) -> list[str]:
    found = list(settings.allowed_hosts)
    if settings.host not in ("0.0.0.0", "::") and settings.host not in found:
        found.append(settings.host if ":" not in settings.host else f"[{settings.host}]")
    return found


def announce(first: FirstStart) -> None:
    """Print the one-time credentials on the console (never to a log)."""
    lines = [
        "",
        "Shipyard first start: an administrator was created.",
        f"  login:    {first.email}",
    ]
    if first.password:
        lines.append(f"  password: {first.password}   (shown once; change it after logging in)")
    lines += [
        f"  API key:  {first.api_key}   (shown once)",
        f"  The CLI credential was saved to {first.credentials_path} (mode 0600).",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
