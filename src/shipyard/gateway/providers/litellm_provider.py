"""The long tail of vendors through the `litellm` library (optional: `pip install
shipyard[litellm]`). Imported on the first call only."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from shipyard.errors import ErrorClass, UpstreamError, classify_status
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.providers.base import ProviderBase
from shipyard.plugins import CHAT, EMBEDDINGS, STREAMING, TOOLS

Body = dict[str, Any]
_ALLOWED = frozenset(
    {
        "messages",
        "input",
        "prompt",
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "seed",
        "tools",
        "tool_choice",
        "response_format",
        "parallel_tool_calls",
        "logprobs",
        "top_logprobs",
        "encoding_format",
        "dimensions",
    }
)


class LiteLLMProvider(ProviderBase):
    capabilities = frozenset({CHAT, STREAMING, TOOLS, EMBEDDINGS})

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec

    def _lib(self) -> Any:
        # offline: without this, importing litellm fetches its price table from GitHub
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise UpstreamError(
                "the litellm provider needs `pip install shipyard[litellm]`",
                error_class=ErrorClass.server_error,
            ) from None
        return litellm

    def _kwargs(self, body: Body, dep: Deployment) -> Body:
        # only OpenAI request parameters reach litellm: it also understands model_list,
        # api_base, headers... which would let a client steer where Shipyard connects
        merged = {**dep.params, **body}
        kwargs = {k: v for k, v in merged.items() if k in _ALLOWED}
        kwargs["model"] = dep.model
        if self.spec.api_key:
            kwargs["api_key"] = self.spec.api_key
        if self.spec.base_url:
            kwargs["api_base"] = self.spec.base_url
        kwargs["timeout"] = dep.timeouts.total
        kwargs["num_retries"] = kwargs["max_retries"] = 0  # Shipyard retries, not litellm
        return kwargs

    async def _call(self, fn: str, kwargs: Body) -> Any:
        lib = self._lib()
        try:
            return await getattr(lib, fn)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - litellm raises its own tree
            status = int(getattr(exc, "status_code", 502) or 502)
            raise UpstreamError(
                f"litellm: {str(exc)[:300]}",
                error_class=classify_status(status, str(exc)),
                upstream_status=status,
            ) from None

    async def chat(self, body: Body, dep: Deployment) -> Body:
        result = await self._call("acompletion", self._kwargs(body, dep))
        return result.model_dump()  # type: ignore[no-any-return]  # litellm is untyped

    async def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        kwargs = {
            **self._kwargs(body, dep),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        stream = await self._call("acompletion", kwargs)
        try:
            async for chunk in stream:
                yield chunk.model_dump()
        except Exception as exc:  # noqa: BLE001 - litellm raises its own tree mid-stream too
            raise UpstreamError(
                f"litellm stream: {str(exc)[:300]}", error_class=ErrorClass.server_error
            ) from None

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        result = await self._call("aembedding", self._kwargs(body, dep))
        return result.model_dump()  # type: ignore[no-any-return]  # litellm is untyped


def create(spec: ProviderSpec) -> LiteLLMProvider:
    return LiteLLMProvider(spec)
