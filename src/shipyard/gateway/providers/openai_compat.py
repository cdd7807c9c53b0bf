"""Any OpenAI-compatible server: OpenAI, Azure OpenAI, vLLM, TGI, llama.cpp server,
Ollama, Mistral, Groq, Together, DeepSeek, OpenRouter... Vendors differ by data (a
profile), not by code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.config.vendors import DEFAULT_PATHS, PROFILES
from shipyard.gateway.providers.base import ProviderBase
from shipyard.gateway.providers.http import HttpConnection
from shipyard.plugins import CHAT, COMPLETIONS, EMBEDDINGS, STREAMING, TOOLS

Body = dict[str, Any]


class OpenAICompatible(ProviderBase):
    capabilities = frozenset({CHAT, COMPLETIONS, EMBEDDINGS, STREAMING, TOOLS})

    def __init__(self, spec: ProviderSpec, *, unix_socket: str | None = None) -> None:
        self.spec = spec
        profile = PROFILES.get(spec.options.get("profile", "openai"), PROFILES["openai"])
        self._paths = {**DEFAULT_PATHS, **profile.paths, **spec.options.get("paths", {})}
        self._query = {**profile.query, **spec.options.get("query", {})} or None
        headers = {}
        if spec.api_key:
            name, fmt = profile.auth
            headers[name] = fmt.format(key=spec.api_key)
        self._http = HttpConnection(spec, headers, unix_socket=unix_socket)

    def _url(self, op: str, model: str) -> str:
        path: str = self._paths[op]
        return self.spec.base_url + path.format(model=model)

    @staticmethod
    def _body(body: Body, dep: Deployment) -> Body:
        out = {**dep.params, **body}
        out["model"] = dep.model
        return out

    async def chat(self, body: Body, dep: Deployment) -> Body:
        data = await self._http.post_json(
            self._url("chat", dep.model), self._body(body, dep), dep, self._query
        )
        return _expect(data, "choices")

    async def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        async for chunk in self._stream("chat", body, dep):
            yield chunk

    async def completion(self, body: Body, dep: Deployment) -> Body:
        data = await self._http.post_json(
            self._url("completions", dep.model), self._body(body, dep), dep, self._query
        )
        return _expect(data, "choices")

    async def completion_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        async for chunk in self._stream("completions", body, dep):
            yield chunk

    async def embeddings(self, body: Body, dep: Deployment) -> Body:
        data = await self._http.post_json(
            self._url("embeddings", dep.model), self._body(body, dep), dep, self._query
        )
        return _expect(data, "data")

    async def _stream(self, op: str, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        payload = self._body(body, dep)
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
        done = False
        async for data in self._http.stream_sse(
            self._url(op, dep.model), payload, dep, self._query
        ):
            if data == b"[DONE]":
                done = True
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    "upstream sent a stream event that is not JSON",
                    error_class=ErrorClass.malformed,
                ) from None
            if isinstance(chunk, dict) and "error" in chunk:
                raise UpstreamError(
                    f"upstream stream error: {chunk['error']}",
                    error_class=ErrorClass.server_error,
                )
            yield chunk
        if not done:
            raise UpstreamError("upstream stream ended early", error_class=ErrorClass.server_error)

    async def healthy(self, dep: Deployment) -> bool:
        """Active health check: the smallest real call the deployment can answer."""
        body: Body = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        op = "chat"
        if self.spec.options.get("health_check") == "embeddings":
            body, op = {"input": "ping"}, "embeddings"
        try:
            await self._http.post_json(
                self._url(op, dep.model), self._body(body, dep), dep, self._query
            )
        except UpstreamError:
            return False
        return True

    async def close(self) -> None:
        await self._http.close()


def _expect(data: Any, field: str) -> Body:
    if not isinstance(data, dict) or field not in data:
        raise UpstreamError(f"upstream response lacks '{field}'", error_class=ErrorClass.malformed)
    return data


def create(spec: ProviderSpec) -> OpenAICompatible:
    return OpenAICompatible(spec)
