"""Anthropic Messages <-> Shipyard's canonical (OpenAI chat) format, both ways, for
requests, responses and streams. Used by `/v1/messages` (Anthropic clients in) and by
the Anthropic provider (Anthropic's API out)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson

from shipyard.errors import InvalidInput

Body = dict[str, Any]

STOP_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
STOP_TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


# Anthropic request -> canonical --------------------------------------------------------


def request_to_openai(body: Any) -> Body:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise InvalidInput(f"'{name}' is required", param=name)
    if not isinstance(body["messages"], list) or not body["messages"]:
        raise InvalidInput("'messages' must be a non-empty list", param="messages")
    out: Body = {"model": body["model"], "max_tokens": body["max_tokens"], "messages": []}
    if body.get("system"):
        if not isinstance(body["system"], (str, list)):
            raise InvalidInput("'system' must be a string or a list of text blocks", param="system")
        out["messages"].append({"role": "system", "content": _text(body["system"])})
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidInput(
                f"messages.{i}.role must be user or assistant", param=f"messages.{i}.role"
            )
        out["messages"] += _message_to_openai(m, i)
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
        ("stream", "stream"),
    ):
        if src in body:
            out[dst] = body[src]
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput("'metadata' must be an object", param="metadata")
    if body.get("tools") is not None and not (
        isinstance(body["tools"], list) and all(isinstance(t, dict) for t in body["tools"])
    ):
        raise InvalidInput("'tools' must be a list of objects", param="tools")
    user = metadata.get("user_id")
    if isinstance(user, str):
        out["user"] = user
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {},
                },
            }
            for t in body["tools"]
            if isinstance(t, dict)
        ]
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        raise InvalidInput("'tool_choice' must be an object", param="tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "any":
            out["tool_choice"] = "required"
        elif kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind == "none":
            out["tool_choice"] = "none"
        else:
            out["tool_choice"] = "auto"
    if out.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


def _message_to_openai(m: Body, i: int) -> list[Body]:
    content = m.get("content")
    if isinstance(content, str):
        return [{"role": m["role"], "content": content}]
    if not isinstance(content, list):
        raise InvalidInput(
            f"messages.{i}.content must be a string or a list of blocks",
            param=f"messages.{i}.content",
        )
    parts: list[Body] = []
    tool_calls: list[Body] = []
    results: list[Body] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            src = block.get("source") or {}
            url = (
                f"data:{src.get('media_type')};base64,{src.get('data')}"
                if src.get("type") == "base64"
                else src.get("url", "")
            )
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "tool_result":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id"),
                    "content": _text(block.get("content")),
                }
            )
        else:
            raise InvalidInput(
                f"messages.{i}.content: unsupported block type {kind!r}",
                param=f"messages.{i}.content",
            )
    out: list[Body] = list(results)
    if parts or tool_calls:
        text_only = all(p["type"] == "text" for p in parts)
        msg: Body = {
            "role": m["role"],
            "content": "".join(p["text"] for p in parts) if text_only else parts,
        }
        if tool_calls:
            msg["tool_calls"] = tool_calls
            if not parts:
                msg["content"] = None
        out.append(msg)
    return out


# canonical response -> Anthropic -------------------------------------------------------


def response_from_openai(result: Body, model: str) -> Body:
    choice = (result.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[Body] = []
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": fn.get("arguments")}
        content.append(
            {
                "type": "tool_use",
                "id": tc.get("id") or _tool_id(),
                "name": fn.get("name"),
                "input": args,
            }
        )
    usage = result.get("usage") or {}
    return {
        "id": "msg_" + (result.get("id") or secrets.token_hex(12)).removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_TO_ANTHROPIC.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
        },
    }


def _tool_id() -> str:
    return "toolu_" + secrets.token_hex(12)


async def stream_from_openai(chunks: AsyncIterator[Body], model: str) -> AsyncIterator[Body]:
    """Canonical chunks -> Anthropic stream events (each dict carries its `type`)."""
    index = -1
    open_kind: str | None = None
    tools: dict[int, int] = {}  # openai tool index -> block index
    stop = "end_turn"
    usage: Body = {}
    msg_id = "msg_" + secrets.token_hex(12)
    try:
        yield {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }
        async for chunk in chunks:
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    if open_kind != "text":
                        if open_kind is not None:
                            yield {"type": "content_block_stop", "index": index}
                        index += 1
                        open_kind = "text"
                        yield {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {"type": "text", "text": ""},
                        }
                    yield {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": delta["content"]},
                    }
                for tc in delta.get("tool_calls") or ():
                    t_index = tc.get("index", 0)
                    fn = tc.get("function") or {}
                    if t_index not in tools:
                        if open_kind is not None:
                            yield {"type": "content_block_stop", "index": index}
                        index += 1
                        tools[t_index] = index
                        open_kind = f"tool{t_index}"
                        yield {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": tc.get("id") or _tool_id(),
                                "name": fn.get("name"),
                                "input": {},
                            },
                        }
                    if fn.get("arguments"):
                        yield {
                            "type": "content_block_delta",
                            "index": tools[t_index],
                            "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]},
                        }
                if choice.get("finish_reason"):
                    stop = STOP_TO_ANTHROPIC.get(choice["finish_reason"], "end_turn")
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # the relay is an async generator
    if open_kind is not None:
        yield {"type": "content_block_stop", "index": index}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {
            "output_tokens": usage.get("completion_tokens", 0),
            "input_tokens": usage.get("prompt_tokens", 0),
        },
    }
    yield {"type": "message_stop"}


def sse_event(event: Body) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


# canonical request -> Anthropic API (the Anthropic provider) ---------------------------


def request_from_openai(body: Body, model: str) -> Body:
    system = []
    messages: list[Body] = []
    for m in body.get("messages") or ():
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(
                _text(m.get("content")) if not isinstance(m.get("content"), str) else m["content"]
            )
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id"),
                "content": _text(m.get("content"))
                if not isinstance(m.get("content"), str)
                else m["content"],
            }
            _append(messages, "user", [block])
            continue
        blocks: list[Body] = []
        content = m.get("content")
        if isinstance(content, str) and content:
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            for p in content:
                if p.get("type") == "text":
                    blocks.append({"type": "text", "text": p.get("text", "")})
                elif p.get("type") == "image_url":
                    url = (p.get("image_url") or {}).get("url", "")
                    if url.startswith("data:") and ";base64," in url:
                        media, data = url[5:].split(";base64,", 1)
                        blocks.append(
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": media, "data": data},
                            }
                        )
                    else:
                        blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            try:
                args = orjson.loads(fn.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                args = {}
            blocks.append(
                {"type": "tool_use", "id": tc.get("id"), "name": fn.get("name"), "input": args}
            )
        _append(messages, "assistant" if role == "assistant" else "user", blocks)
    out: Body = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or 1024,
    }
    if system:
        out["system"] = "\n\n".join(system)
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(src) is not None:
            out[dst] = body[src]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if body.get("tools"):
        out["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object"},
            }
            for t in body["tools"]
        ]
    choice = body.get("tool_choice")
    if choice == "required":
        out["tool_choice"] = {"type": "any"}
    elif choice == "none":
        out["tool_choice"] = {"type": "none"}
    elif isinstance(choice, dict):
        out["tool_choice"] = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    return out


def _append(messages: list[Body], role: str, blocks: list[Body]) -> None:
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def response_to_openai(data: Body, model: str) -> Body:
    text = "".join(b.get("text", "") for b in data.get("content") or () if b.get("type") == "text")
    tool_calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {
                "name": b.get("name"),
                "arguments": orjson.dumps(b.get("input") or {}).decode(),
            },
        }
        for b in data.get("content") or ()
        if b.get("type") == "tool_use"
    ]
    message: Body = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = data.get("usage") or {}
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "id": "chatcmpl-" + str(data.get("id", secrets.token_hex(12))).removeprefix("msg_"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": STOP_TO_OPENAI.get(data.get("stop_reason") or "", "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
