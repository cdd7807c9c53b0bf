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
#
# Each block is checked as it is converted, and a refusal names the field in Anthropic's
# spelling (`messages.0.content.1.text`): the chat check that runs after the conversion
# would name the converted body's fields, which the client never sent.

_IMAGE_TYPES = ("base64", "url")
_BLOCKS = {  # the block types each role may send
    "user": ("text", "image", "tool_result"),
    "assistant": ("text", "tool_use"),
}
_CHOICES = ("auto", "any", "tool", "none")


def _refuse(where: str, what: str) -> InvalidInput:
    return InvalidInput(f"{where} {what}", param=where)


def _str(obj: Body, name: str, where: str, *, required: bool = True) -> Any:
    value = obj.get(name)
    if (value is not None or required) and not isinstance(value, str):
        raise _refuse(f"{where}.{name}", "must be a string")
    return value


def _text_blocks(value: Any, where: str) -> str:
    """A string, or a list of text blocks (their text joined)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _refuse(where, "must be a string or a list of text blocks")
    texts = []
    for j, block in enumerate(value):
        here = f"{where}.{j}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _refuse(here, "must be a block with a type")
        if block["type"] == "text":
            texts.append(_str(block, "text", here))
    return "".join(texts)


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
        out["messages"].append(
            {"role": "system", "content": _text_blocks(body["system"], "system")}
        )
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidInput(
                f"messages.{i}.role must be user or assistant", param=f"messages.{i}.role"
            )
        out["messages"] += _message_to_openai(m, i)
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("stream", "stream")):
        if src in body:
            out[dst] = body[src]
    stop = body.get("stop_sequences")
    if stop is not None:
        if not (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)
        ):
            raise _refuse("stop_sequences", "must be a list of up to 4 strings")
        out["stop"] = stop
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput("'metadata' must be an object", param="metadata")
    user = _str(metadata, "user_id", "metadata", required=False)
    if user is not None:
        if len(user) > 200 or "\x00" in user:
            raise _refuse("metadata.user_id", "must be at most 200 characters, without NUL")
        out["user"] = user
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidInput("'tools' must be a list of objects", param="tools")
    if tools:
        out["tools"] = [_tool_to_openai(t, f"tools.{j}") for j, t in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in _CHOICES:
            raise InvalidInput(
                "'tool_choice' must be an object with a type of auto, any, tool or none",
                param="tool_choice",
            )
        kind = choice["type"]
        if kind == "any":
            out["tool_choice"] = "required"
        elif kind == "tool":
            name = _str(choice, "name", "tool_choice")
            out["tool_choice"] = {"type": "function", "function": {"name": name}}
        else:
            out["tool_choice"] = kind
    if out.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


def _tool_to_openai(tool: Any, where: str) -> Body:
    if not isinstance(tool, dict):
        raise _refuse(where, "must be an object")
    schema = tool.get("input_schema")
    if schema is not None and not isinstance(schema, dict):
        raise _refuse(f"{where}.input_schema", "must be an object")
    return {
        "type": "function",
        "function": {
            "name": _str(tool, "name", where),
            "description": _str(tool, "description", where, required=False) or "",
            "parameters": schema or {},
        },
    }


def _message_to_openai(m: Body, i: int) -> list[Body]:
    content = m.get("content")
    where = f"messages.{i}.content"
    if isinstance(content, str):
        return [{"role": m["role"], "content": content}]
    if not isinstance(content, list) or not content:
        raise _refuse(where, "must be a string or a non-empty list of blocks")
    parts: list[Body] = []
    tool_calls: list[Body] = []
    results: list[Body] = []
    for j, block in enumerate(content):
        here = f"{where}.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _BLOCKS[m["role"]]:
            allowed = ", ".join(_BLOCKS[m["role"]])
            raise InvalidInput(
                f"{here}: a {m['role']} message takes {allowed} blocks, not {kind!r}",
                param=f"{here}.type",
            )
        if kind == "text":
            parts.append({"type": "text", "text": _str(block, "text", here)})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, here)}})
        elif kind == "tool_use":
            args = block.get("input")
            if args is not None and not isinstance(args, dict):
                raise _refuse(f"{here}.input", "must be an object")
            tool_calls.append(
                {
                    "id": _str(block, "id", here),
                    "type": "function",
                    "function": {
                        "name": _str(block, "name", here),
                        "arguments": orjson.dumps(args or {}).decode(),
                    },
                }
            )
        else:  # tool_result
            result = block.get("content")
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": _str(block, "tool_use_id", here),
                    "content": "" if result is None else _text_blocks(result, f"{here}.content"),
                }
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


def _image_url(block: Body, where: str) -> str:
    src = block.get("source")
    if not isinstance(src, dict) or src.get("type") not in _IMAGE_TYPES:
        raise _refuse(f"{where}.source", "must be an object with a type of base64 or url")
    if src["type"] == "url":
        url: str = _str(src, "url", f"{where}.source")
        return url
    media = _str(src, "media_type", f"{where}.source")
    return f"data:{media};base64,{_str(src, 'data', f'{where}.source')}"


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
