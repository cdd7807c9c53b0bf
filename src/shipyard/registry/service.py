"""The registry's service: the gates promotions run, the route resolvers it hands
the gateway (set on the platform when the service is built, before the gateway's
first snapshot), and the delivery of its event outbox to webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from shipyard.plugins import GATES, Gate
from shipyard.registry.artifacts import ArtifactStore, LocalArtifacts
from shipyard.registry.events import Outbox
from shipyard.registry.promotion import BUILTIN_GATES
from shipyard.registry.prompts import RegistryPrompts
from shipyard.registry.resolve import CatalogResolver, RegistryResolver

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.settings import Settings

log = logging.getLogger("shipyard.registry")


class Registry:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.gates: dict[str, Gate] = dict(BUILTIN_GATES)
        for name in platform.plugins.names(GATES):  # evaluation thresholds, team checks
            if name not in self.gates:
                self.gates[name] = platform.plugins.load(GATES, name)()
        for resolver in (RegistryResolver(), CatalogResolver()):
            platform.route_resolvers[resolver.kind] = resolver
        platform.prompt_sources.append(RegistryPrompts())  # `prompt: name@alias` calls
        self.outbox = Outbox(platform.db, platform.box)
        self.artifacts: ArtifactStore = artifact_store(platform.settings)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ensure = getattr(self.artifacts, "ensure_bucket", None)
        if ensure is not None:  # S3: the bucket exists before the first upload
            await asyncio.to_thread(ensure)
        self._task = asyncio.create_task(self.outbox.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.outbox.close()
        self.artifacts.close()


def artifact_store(settings: Settings) -> ArtifactStore:
    """Files under `<home>/artifacts` by default; an S3-compatible bucket when set."""
    if settings.artifact_s3_bucket:
        from shipyard.registry.s3 import S3Artifacts

        secret = settings.artifact_s3_secret_key
        spool = settings.home / "artifacts-spool"
        spool.mkdir(mode=0o700, exist_ok=True)
        return S3Artifacts(
            settings.artifact_s3_endpoint or "https://s3.amazonaws.com",
            settings.artifact_s3_bucket,
            settings.artifact_s3_access_key or "",
            secret.get_secret_value() if secret else "",
            region=settings.artifact_s3_region,
            prefix=settings.artifact_s3_prefix,
            max_size=settings.artifact_max_bytes,
            spool_dir=spool,
        )
    return LocalArtifacts(settings.home / "artifacts", max_size=settings.artifact_max_bytes)
