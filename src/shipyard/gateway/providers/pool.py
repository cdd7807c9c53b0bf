"""Live provider instances, by spec: reused while their spec is unchanged, closed after."""

from __future__ import annotations

import asyncio
import contextlib

from shipyard.gateway.config.specs import ProviderSpec
from shipyard.plugins import Plugins, Provider


class ProviderPool:
    """Provider instances by spec: reused while their spec is unchanged, closed after."""

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins
        self._live: dict[str, tuple[ProviderSpec, Provider]] = {}
        self._retired: list[Provider] = []

    def get(self, spec: ProviderSpec) -> Provider:
        entry = self._live.get(spec.id)
        if entry is not None and entry[0] == spec:
            return entry[1]
        if entry is not None:  # in-flight calls may still use it: close it a minute later
            self._retire(entry[1])
        provider = self._plugins.provider_factory(spec.kind)(spec)
        self._live[spec.id] = (spec, provider)
        return provider

    def retain(self, ids: set[str]) -> None:
        """Retire the providers whose id is not in `ids` (removed, or used by no route)."""
        for spec_id in [i for i in self._live if i not in ids]:
            self._retire(self._live.pop(spec_id)[1])

    def _retire(self, provider: Provider) -> None:
        self._retired.append(provider)

        async def later() -> None:
            await asyncio.sleep(60)
            if provider in self._retired:
                self._retired.remove(provider)
                await provider.close()

        # without a running loop (tests building snapshots) it is closed at shutdown
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(later())

    async def close(self) -> None:
        for provider in [p for _, p in self._live.values()] + self._retired:
            await provider.close()
        self._live.clear()
        self._retired.clear()
