"""The provider contract.

A provider is one upstream connection (an OpenAI-compatible server, Anthropic, Gemini, a
local runtime). It speaks Shipyard's canonical format, which is OpenAI's: request bodies
and responses are plain dicts shaped like OpenAI's chat/completions/embeddings API.
Failures are raised as `UpstreamFailure` with an `ErrorClass`, which drives retries,
cooldowns and fallbacks.

A plugin module exposes `create(spec: ProviderSpec) -> Provider` and registers it:

    [project.entry-points."shipyard.providers"]
    mycloud = "mycloud_shipyard:create"

Then `kind: mycloud` in a provider's configuration selects it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from shipyard.gateway.specs import Deployment, ProviderSpec

Body = dict[str, Any]


@runtime_checkable
class Provider(Protocol):
    spec: ProviderSpec

    async def chat(self, body: Body, dep: Deployment) -> Body:
        """A `chat.completion` for a chat request (stream is false)."""
        ...

    def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        """`chat.completion.chunk` dicts; the last one carries `usage` when known."""
        ...

    async def completion(self, body: Body, dep: Deployment) -> Body:
        """A `text_completion` for a legacy completions request."""
        ...

    def completion_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]: ...

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        """An embeddings `list` response."""
        ...

    async def close(self) -> None: ...


Factory = Callable[[ProviderSpec], Provider]
BUILTIN = {
    "openai": "shipyard.gateway.providers.openai_compat:create",
    "anthropic": "shipyard.gateway.providers.anthropic:create",
    "gemini": "shipyard.gateway.providers.gemini:create",
    "llama_cpp": "shipyard.gateway.providers.llama_local:create",
    "sentence_transformers": "shipyard.gateway.providers.st_embeddings:create",
    "litellm": "shipyard.gateway.providers.litellm_provider:create",
}


@cache
def registered() -> dict[str, str]:
    """Provider kinds: the entry points of `shipyard.providers` (built-ins included)."""
    found = {ep.name: ep.value for ep in entry_points(group="shipyard.providers")}
    return {**BUILTIN, **found}


def factory(kind: str) -> Factory:
    target = registered().get(kind)
    if target is None:
        raise KeyError(kind)
    module_name, _, attr = target.partition(":")
    import importlib

    module = importlib.import_module(module_name)
    return getattr(module, attr)  # type: ignore[no-any-return]


class Unsupported:
    """Mixin: operations a provider does not offer answer with a clear 400."""

    spec: ProviderSpec

    def _unsupported(self, what: str) -> Exception:
        from shipyard.gateway.errors import InvalidRequest

        return InvalidRequest(
            f"provider '{self.spec.name}' ({self.spec.kind}) does not support {what}"
        )

    async def chat(self, body: Body, dep: Deployment) -> Body:
        raise self._unsupported("chat completions")

    async def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        raise self._unsupported("chat completions")
        yield {}  # pragma: no cover

    async def completion(self, body: Body, dep: Deployment) -> Body:
        raise self._unsupported("text completions")

    async def completion_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        raise self._unsupported("text completions")
        yield {}  # pragma: no cover

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        raise self._unsupported("embeddings")

    async def close(self) -> None:
        return None
