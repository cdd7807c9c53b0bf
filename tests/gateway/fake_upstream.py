"""A fake LLM upstream: a real HTTP server on loopback speaking OpenAI's API (and
Anthropic's and Gemini's), whose replies each test scripts: 429 with Retry-After, 5xx
bursts, hangs, slow first tokens, truncated streams, malformed JSON."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Step:
    # ok | status | raw | redirect | hang | slow | truncated | malformed | no_usage
    kind: str = "ok"
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    content: str | None = None
    tool_call: dict[str, Any] | None = None
    message: str = "scripted failure"  # for raw: the whole (text/plain) body
    location: str = ""  # for redirect


@dataclass
class FakeUpstream:
    script: deque[Step] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    # scripting ----------------------------------------------------------------------
    def then(self, kind: str = "ok", **kw: Any) -> FakeUpstream:
        self.script.append(Step(kind=kind, **kw))
        return self

    def fail(self, status: int, times: int = 1, **kw: Any) -> FakeUpstream:
        for _ in range(times):
            self.then("status", status=status, **kw)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _next(self) -> Step:
        return self.script.popleft() if self.script else Step()

    # server ------------------------------------------------------------------------
    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/v1/completions", self._completions)
            app.router.add_post("/v1/embeddings", self._embeddings)
            app.router.add_get("/v1/models", self._models)
            app.router.add_post("/v1/messages", self._anthropic)
            app.router.add_post("/v1beta/models/{model}:generateContent", self._gemini)
            app.router.add_post("/v1beta/models/{model}:streamGenerateContent", self._gemini_stream)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return body

    async def _failure(self, step: Step) -> web.Response | None:
        if step.kind == "status":
            headers = {"Retry-After": step.retry_after} if step.retry_after else {}
            body = {
                "error": {
                    "message": step.message,
                    "type": "server_error",
                    "code": "context_length_exceeded" if "context" in step.message else None,
                }
            }
            return web.json_response(body, status=step.status, headers=headers)
        if step.kind == "raw":
            return web.Response(text=step.message, status=step.status, content_type="text/plain")
        if step.kind == "redirect":
            return web.Response(status=step.status, headers={"Location": step.location})
        if step.kind == "hang":
            await asyncio.sleep(step.delay or 30)
        if step.kind == "malformed":
            return web.Response(body=b"{this is not json", content_type="application/json")
        return None

    # OpenAI -------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        step = self._next()
        failure = await self._failure(step)
        if failure is not None:
            return failure
        text = step.content if step.content is not None else _answer(body)
        if body.get("stream"):
            return await self._stream_chat(request, body, step, text)
        if step.kind == "slow":
            await asyncio.sleep(step.delay)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if step.tool_call or (body.get("tools") and body.get("tool_choice") == "required"):
            call = step.tool_call or {
                "name": body["tools"][0]["function"]["name"],
                "arguments": '{"city": "Paris"}',
            }
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
            }
            finish = "tool_calls"
        out: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if step.kind != "no_usage":
            out["usage"] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        return web.json_response(out)

    async def _stream_chat(
        self, request: web.Request, body: dict[str, Any], step: Step, text: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if step.kind == "slow":
            await asyncio.sleep(step.delay)
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if step.kind == "truncated" and i == 1:
                await asyncio.sleep(0.05)
                request.transport.close()  # type: ignore[union-attr]
                return resp
            if step.delay and step.kind == "drip":
                await asyncio.sleep(step.delay)
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await resp.write(b"data: " + orjson.dumps(final) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage") and step.kind != "no_usage":
            usage = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": len(words),
                    "total_tokens": 10 + len(words),
                },
            }
            await resp.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        failure = await self._failure(self._next())
        if failure is not None:
            return failure
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for text, finish in ((" and", None), (" so on", "stop")):
                chunk = {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "text": text, "finish_reason": finish}],
                }
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "text": " and so on", "finish_reason": "stop", "logprobs": None}
                ],
                "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
            }
        )

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        failure = await self._failure(self._next())
        if failure is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response(
            {
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1 * (i + 1)] * 8}
                    for i in range(len(inputs))
                ],
                "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    # Anthropic ----------------------------------------------------------------------
    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        step = self._next()
        failure = await self._failure(step)
        if failure is not None:
            return failure
        text = step.content if step.content is not None else "Bonjour from Claude"
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            events = [
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": body["model"],
                        "usage": {"input_tokens": 12, "output_tokens": 1},
                    },
                },
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                *[
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": w},
                    }
                    for w in text.split(" ")
                ],
                {"type": "content_block_stop", "index": 0},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 4},
                },
                {"type": "message_stop"},
            ]
            for ev in events:
                await resp.write(
                    b"event: " + ev["type"].encode() + b"\ndata: " + orjson.dumps(ev) + b"\n\n"
                )
            return resp
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        stop = "end_turn"
        if body.get("tools") and (body.get("tool_choice") or {}).get("type") == "any":
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": body["tools"][0]["name"],
                    "input": {"city": "Paris"},
                }
            ]
            stop = "tool_use"
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "usage": {"input_tokens": 12, "output_tokens": 4},
            }
        )

    # Gemini -------------------------------------------------------------------------
    async def _gemini(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        step = self._next()
        failure = await self._failure(step)
        if failure is not None:
            return failure
        parts: list[dict[str, Any]] = [{"text": step.content or "Hallo from Gemini"}]
        tools = body.get("tools") or []
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        if tools and mode == "ANY":
            name = tools[0]["functionDeclarations"][0]["name"]
            parts = [{"functionCall": {"name": name, "args": {"city": "Paris"}}}]
        return web.json_response(
            {
                "candidates": [
                    {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
                ],
                "usageMetadata": {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": 3,
                    "totalTokenCount": 12,
                },
            }
        )

    async def _gemini_stream(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = ["Hallo", " from", " Gemini"]
        for i, w in enumerate(words):
            ev: dict[str, Any] = {
                "candidates": [{"content": {"role": "model", "parts": [{"text": w}]}}]
            }
            if i == len(words) - 1:
                ev["candidates"][0]["finishReason"] = "STOP"
                ev["usageMetadata"] = {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": 3,
                    "totalTokenCount": 12,
                }
            await resp.write(b"data: " + orjson.dumps(ev) + b"\r\n\r\n")
        return resp


def _answer(body: dict[str, Any]) -> str:
    rf = body.get("response_format") or {}
    if rf.get("type") in ("json_object", "json_schema"):
        return '{"answer": 42}'
    last = body["messages"][-1].get("content")
    return f"echo: {last}" if isinstance(last, str) else "echo"
