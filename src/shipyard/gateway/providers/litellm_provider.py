"""The long tail of vendors through the `litellm` library (optional: `pip install
shipyard[litellm]`). Imported on the first call only.

litellm falls back to the host's own credentials (`OPENAI_API_KEY` and friends, the
machine's cloud role for Bedrock or Vertex) and to `localhost` for some vendors, and it
connects through its own HTTP stack, outside Shipyard's connect-time address check. So
only a platform administrator configures it (config/manage.py), every call passes the
provider's own `api_base` and `api_key` (refused when either is missing), and only
vendors in `API_KEY_VENDORS`, which authenticate with that key at that base URL, are
served; a vendor that would use the host's identity is refused."""

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


# litellm model prefixes whose calls authenticate with the api_key given, at the api_base
# given. Left out on purpose: cloud-identity vendors (bedrock, sagemaker, vertex_ai,
# azure, databricks, oci, snowflake...), in-process engines (vllm) and vendors reading
# tokens from the host's disk (github_copilot).
API_KEY_VENDORS = frozenset(
    {
        "openai",
        "text-completion-openai",
        "custom_openai",
        "openai_like",
        "anthropic",
        "cohere",
        "cohere_chat",
        "mistral",
        "codestral",
        "groq",
        "deepseek",
        "together_ai",
        "fireworks_ai",
        "openrouter",
        "perplexity",
        "xai",
        "cerebras",
        "sambanova",
        "nvidia_nim",
        "deepinfra",
        "huggingface",
        "replicate",
        "ai21",
        "ai21_chat",
        "voyage",
        "jina_ai",
        "hosted_vllm",
        "ollama",
        "ollama_chat",
        "lm_studio",
        "llamafile",
        "infinity",
        "friendliai",
        "nlp_cloud",
        "gemini",
        "novita",
        "nscale",
        "featherless_ai",
        "hyperbolic",
        "lambda_ai",
        "moonshot",
        "dashscope",
    }
)


def model_problem(model: str) -> str | None:
    """Why litellm must not be asked for `model` (a `vendor/model` name), or None."""
    vendor, sep, rest = model.partition("/")
    if not sep or not rest:
        return "the litellm provider needs a vendor prefix (such as 'openai/gpt-4o-mini')"
    if vendor not in API_KEY_VENDORS:
        return (
            f"vendor '{vendor}' is not served by the litellm provider (only vendors that "
            "authenticate with the provider's own key at its base URL)"
        )
    return None


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
        problem = model_problem(dep.model)
        if problem is not None:
            raise UpstreamError(f"model: {problem}", error_class=ErrorClass.bad_request)
        if not self.spec.api_key or not self.spec.base_url:
            # without them litellm would use the host's credentials or localhost
            raise UpstreamError(
                f"provider '{self.spec.name}' needs a base_url and an api_key",
                error_class=ErrorClass.server_error,
            )
        kwargs["model"] = dep.model
        kwargs["api_key"] = self.spec.api_key
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
                f"litellm: {exc}",  # cut after its secrets are redacted (scrub)
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
                f"litellm stream: {exc}", error_class=ErrorClass.server_error
            ) from None

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        result = await self._call("aembedding", self._kwargs(body, dep))
        return result.model_dump()  # type: ignore[no-any-return]  # litellm is untyped


def create(spec: ProviderSpec) -> LiteLLMProvider:
    return LiteLLMProvider(spec)
