"""Google's Gemini API (generateContent / streamGenerateContent) as a provider."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.providers.base import ProviderBase
from shipyard.gateway.providers.http import HttpConnection
from shipyard.plugins import CHAT, STREAMING, TOOLS

Body = dict[str, Any]
FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
}


def to_gemini(body: Body) -> Body:
    system: list[str] = []
    contents: list[Body] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    for m in body.get("messages") or ():
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(
                content
                if isinstance(content, str)
                else "".join(p.get("text", "") for p in content or ())
            )
            continue
        parts: list[Body] = []
        if role == "tool":
            try:
                response = orjson.loads(content) if isinstance(content, str) else content
            except orjson.JSONDecodeError:
                response = {"result": content}
            if not isinstance(response, dict):
                response = {"result": response}
            parts.append(
                {
                    "functionResponse": {
                        "name": names.get(m.get("tool_call_id"), "tool"),
                        "response": response,
                    }
                }
            )
            contents.append({"role": "user", "parts": parts})
            continue
        if isinstance(content, str) and content:
            parts.append({"text": content})
        elif isinstance(content, list):
            for p in content:
                if p.get("type") == "text":
                    parts.append({"text": p.get("text", "")})
                elif p.get("type") == "image_url":
                    url = (p.get("image_url") or {}).get("url", "")
                    if url.startswith("data:") and ";base64," in url:
                        mime, data = url[5:].split(";base64,", 1)
                        parts.append({"inlineData": {"mimeType": mime, "data": data}})
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            names[str(tc.get("id"))] = str(fn.get("name") or "tool")
            try:
                args = orjson.loads(fn.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                args = {}
            parts.append({"functionCall": {"name": fn.get("name"), "args": args}})
        contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    out: Body = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: Body = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("n", "candidateCount"),
    ):
        if body.get(src) is not None:
            config[dst] = body[src]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    rf = body.get("response_format") or {}
    if rf.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = schema
    if config:
        out["generationConfig"] = config
    if body.get("tools"):
        out["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t["function"]["name"],
                        "description": t["function"].get("description", ""),
                        "parameters": t["function"].get("parameters") or {"type": "object"},
                    }
                    for t in body["tools"]
                ]
            }
        ]
        choice = body.get("tool_choice")
        mode = {"required": "ANY", "none": "NONE"}.get(
            choice if isinstance(choice, str) else "", "AUTO"
        )
        fcc: Body = {"mode": mode}
        if isinstance(choice, dict):
            fcc = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
        out["toolConfig"] = {"functionCallingConfig": fcc}
    return out


def _message(candidate: Body) -> tuple[Body, str]:
    text: list[str] = []
    calls: list[Body] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part:
            text.append(part["text"])
        if "functionCall" in part:
            fc = part["functionCall"]
            calls.append(
                {
                    "id": "call_" + secrets.token_hex(8),
                    "type": "function",
                    "function": {
                        "name": fc.get("name"),
                        "arguments": orjson.dumps(fc.get("args") or {}).decode(),
                    },
                }
            )
    message: Body = {"role": "assistant", "content": "".join(text) or None}
    finish = FINISH.get(candidate.get("finishReason") or "STOP", "stop")
    if calls:
        message["tool_calls"] = calls
        finish = "tool_calls"
    return message, finish


def _usage(data: Body) -> Body:
    meta = data.get("usageMetadata") or {}
    prompt, completion = meta.get("promptTokenCount", 0), meta.get("candidatesTokenCount", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class GeminiProvider(ProviderBase):
    capabilities = frozenset({CHAT, STREAMING, TOOLS})

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        headers = {"x-goog-api-key": spec.api_key} if spec.api_key else {}
        self._http = HttpConnection(spec, headers)
        self._base = spec.base_url.rstrip("/") + "/" + spec.options.get("api_version", "v1beta")

    async def chat(self, body: Body, dep: Deployment) -> Body:
        data = await self._http.post_json(
            f"{self._base}/models/{dep.model}:generateContent",
            to_gemini({**dep.params, **body}),
            dep,
        )
        candidates = data.get("candidates") if isinstance(data, dict) else None
        if not candidates:
            raise UpstreamError("Gemini reply has no candidates", error_class=ErrorClass.malformed)
        choices = []
        for i, cand in enumerate(candidates):
            message, finish = _message(cand)
            choices.append({"index": i, "message": message, "finish_reason": finish})
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": dep.model,
            "choices": choices,
            "usage": _usage(data),
        }

    async def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        chunk_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        usage: Body | None = None
        url = f"{self._base}/models/{dep.model}:streamGenerateContent"
        async for data in self._http.stream_sse(
            url, to_gemini({**dep.params, **body}), dep, params={"alt": "sse"}
        ):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    "Gemini sent a stream event that is not JSON", error_class=ErrorClass.malformed
                ) from None
            if event.get("usageMetadata"):
                usage = _usage(event)
            for cand in event.get("candidates") or ():
                message, finish = _message(cand)
                delta: Body = {}
                if message.get("content"):
                    delta["content"] = message["content"]
                if message.get("tool_calls"):
                    delta["tool_calls"] = [
                        {"index": i, **tc} for i, tc in enumerate(message["tool_calls"])
                    ]
                yield {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": dep.model,
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "finish_reason": finish if cand.get("finishReason") else None,
                        }
                    ],
                }
        if usage is not None:
            yield {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": dep.model,
                "choices": [],
                "usage": usage,
            }

    async def close(self) -> None:
        await self._http.close()


def create(spec: ProviderSpec) -> GeminiProvider:
    return GeminiProvider(spec)
