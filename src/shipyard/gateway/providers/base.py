"""What providers share. The contract itself (`Provider`) is on the one page of
extension contracts, `shipyard.plugins`; a provider module exposes
`create(spec: ProviderSpec) -> Provider` and registers it:

    [project.entry-points."shipyard.providers"]
    mycloud = "mycloud_shipyard:create"

Then `kind: mycloud` in a provider's configuration selects it. Built-ins register the
same way, in Shipyard's own pyproject.toml.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.gateway.config.specs import Deployment, ProviderSpec

Body = dict[str, Any]


class ProviderBase:
    """Defaults for a provider: operations outside its `capabilities` answer with a
    clear 400, and there is no active health check."""

    spec: ProviderSpec
    capabilities: frozenset[str] = frozenset()

    def _unsupported(self, what: str) -> Exception:
        return InvalidInput(
            f"provider '{self.spec.name}' ({self.spec.kind}) does not support {what}"
        )

    async def chat(self, body: Body, dep: Deployment) -> Body:
        raise self._unsupported("chat completions")

    async def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        for _ in ():  # an async generator that raises on its first step
            yield {}
        raise self._unsupported("chat completions")

    async def completion(self, body: Body, dep: Deployment) -> Body:
        raise self._unsupported("text completions")

    async def completion_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        for _ in ():  # an async generator that raises on its first step
            yield {}
        raise self._unsupported("text completions")

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        raise self._unsupported("embeddings")

    @property
    def slots(self) -> int | None:
        """Requests the provider runs at once, for capacity-aware routing (core/balancer):
        `options.slots` when the operator states it (a vLLM or llama.cpp server's batch),
        else unknown (never full)."""
        value = self.spec.options.get("slots")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return None

    async def healthy(self, dep: Deployment) -> bool:
        """No active check by default (a probe of a paid API is a paid call): a cooling
        deployment comes back when its cooldown ends. Providers whose check is free or
        cheap (local models, OpenAI-compatible servers) override this."""
        return False

    async def close(self) -> None:
        return None
