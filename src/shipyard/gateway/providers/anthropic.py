"""Anthropic's Messages API as a provider: canonical requests translated out, replies
and stream events translated back."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.formats import anthropic as fmt
from shipyard.gateway.providers.base import ProviderBase
from shipyard.gateway.providers.http import HttpConnection
from shipyard.plugins import CHAT, STREAMING, TOOLS

Body = dict[str, Any]
VERSION = "2023-06-01"


class AnthropicProvider(ProviderBase):
    capabilities = frozenset({CHAT, STREAMING, TOOLS})

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        headers = {"anthropic-version": spec.options.get("version", VERSION)}
        if spec.api_key:
            headers["x-api-key"] = spec.api_key
        self._http = HttpConnection(spec, headers)
        self._url = spec.base_url.rstrip("/") + "/v1/messages"

    async def chat(self, body: Body, dep: Deployment) -> Body:
        payload = fmt.request_from_openai({**dep.params, **body}, dep.model)
        data = await self._http.post_json(self._url, payload, dep)
        if not isinstance(data, dict) or "content" not in data:
            raise UpstreamError("Anthropic reply lacks 'content'", error_class=ErrorClass.malformed)
        return fmt.response_to_openai(data, dep.model)

    async def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        payload = fmt.request_from_openai({**dep.params, **body}, dep.model)
        payload["stream"] = True
        chunk_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        prompt = completion = 0
        tool_index: dict[int, int] = {}
        stopped = False

        def chunk(delta: Body, finish: str | None = None) -> Body:
            return {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": dep.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async for data in self._http.stream_sse(self._url, payload, dep):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    "Anthropic sent a stream event that is not JSON",
                    error_class=ErrorClass.malformed,
                ) from None
            kind = event.get("type")
            if kind == "message_start":
                prompt = (event.get("message") or {}).get("usage", {}).get("input_tokens", 0)
                yield chunk({"role": "assistant", "content": ""})
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") == "tool_use":
                    n = tool_index[event.get("index", 0)] = len(tool_index)
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": n,
                                    "id": block.get("id"),
                                    "type": "function",
                                    "function": {"name": block.get("name"), "arguments": ""},
                                }
                            ]
                        }
                    )
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta":
                    yield chunk({"content": delta.get("text", "")})
                elif delta.get("type") == "input_json_delta":
                    n = tool_index.get(event.get("index", 0), 0)
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": n,
                                    "function": {"arguments": delta.get("partial_json", "")},
                                }
                            ]
                        }
                    )
            elif kind == "message_delta":
                completion = (event.get("usage") or {}).get("output_tokens", completion)
                reason = (event.get("delta") or {}).get("stop_reason")
                if reason:
                    yield chunk({}, fmt.STOP_TO_OPENAI.get(reason, "stop"))
            elif kind == "message_stop":
                stopped = True
                break
            elif kind == "error":
                raise UpstreamError(
                    f"Anthropic stream error: {event.get('error')}",
                    error_class=ErrorClass.server_error,
                )
        if not stopped:
            raise UpstreamError("Anthropic stream ended early", error_class=ErrorClass.server_error)
        yield {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": dep.model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def close(self) -> None:
        await self._http.close()


def create(spec: ProviderSpec) -> AnthropicProvider:
    return AnthropicProvider(spec)
