"""Local GGUF models through llama-cpp-python, in process. The import of llama_cpp and
the model load happen on the first call, in a thread. One generation at a time per
model (a llama.cpp context is not thread-safe); threads default to the core count so
the model never oversubscribes the machine."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.providers.base import ProviderBase
from shipyard.gateway.providers.llama_worker import tokens_in
from shipyard.plugins import CHAT, COMPLETIONS, STREAMING, TOOLS

if TYPE_CHECKING:
    from shipyard.gateway.providers.llama_ray import RayServed
    from shipyard.gateway.providers.llama_server import LlamaServers

Body = dict[str, Any]
_PASS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "logit_bias",
)


class LlamaLocal(ProviderBase):
    capabilities = frozenset({CHAT, COMPLETIONS, STREAMING, TOOLS})

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._path = str(spec.options.get("model_path", ""))
        self._threads = int(spec.options.get("n_threads") or os.cpu_count() or 1)
        self._ctx = int(spec.options.get("n_ctx") or 4096)
        # a LoRA adapter (GGUF) applied on the model at load: a fine-tune on its base
        self._lora = str(spec.options.get("lora_path") or "") or None
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._worker = None
        # llama-server processes, or a Ray Serve application: the same calls
        self._servers: LlamaServers | RayServed | None = None
        self._server_missing = False
        if spec.options.get("engine") == "ray":
            from shipyard.gateway.providers.llama_ray import RayServed

            self._servers = RayServed(spec, self._threads, int(spec.options.get("slots") or 4))
        elif spec.options.get("engine") == "server":
            from shipyard.gateway.providers.llama_server import LlamaServers, ServerArgs, binary

            found = binary()
            self._server_missing = found is None
            if found is not None:
                slots = int(spec.options.get("slots") or 4)
                args = ServerArgs(found, self._path, self._threads, self._ctx, slots, self._lora)
                replicas = int(spec.options.get("replicas") or 1)
                self._servers = LlamaServers(args, replicas, spec.name)
        elif spec.options.get("worker"):
            from shipyard.gateway.providers.llama_worker import LlamaReplicas

            replicas = int(spec.options.get("replicas") or 1)
            self._worker = LlamaReplicas(replicas, self._path, self._threads, self._ctx, self._lora)

    def _llama(self) -> Any:
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    if not self._files_present():
                        raise UpstreamError(
                            # the path is the operator's business, not the caller's
                            f"provider '{self.spec.name}': its model file is missing",
                            error_class=ErrorClass.server_error,
                        )
                    from llama_cpp import Llama

                    self._model = Llama(
                        model_path=self._path,
                        n_ctx=self._ctx,
                        n_threads=self._threads,
                        n_threads_batch=self._threads,
                        lora_path=self._lora,
                        verbose=False,
                    )
        return self._model

    def _kwargs(self, body: Body, dep: Deployment) -> Body:
        merged = {**dep.params, **body}
        kwargs = {k: merged[k] for k in _PASS if merged.get(k) is not None}
        limit = merged.get("max_completion_tokens") or merged.get("max_tokens")
        kwargs["max_tokens"] = int(limit) if limit else 512
        if kwargs.get("response_format", {}).get("type") == "json_schema":
            schema = (kwargs["response_format"].get("json_schema") or {}).get("schema")
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return kwargs

    def _generate(self, fn: str, first: Any, kwargs: Body) -> Body:
        with self._run_lock:
            llama = self._llama()
            try:
                result: Body = getattr(llama, fn)(first, **kwargs)
            except ValueError as exc:  # llama.cpp says so when the prompt is too long
                text = str(exc)
                cls = ErrorClass.context_length if "context" in text else ErrorClass.bad_request
                raise UpstreamError(text[:300], error_class=cls) from None
            return result

    async def _run(self, fn: str, first: Any, kwargs: Body) -> Body:
        if self._worker is not None:
            return await self._worker.call(fn, first, kwargs)
        return await asyncio.to_thread(self._generate, fn, first, kwargs)

    @property
    def slots(self) -> int:
        """Requests this provider generates at once (the balancer's capacity)."""
        if self._servers is not None:
            return self._servers.slots
        return len(self._worker.workers) if self._worker is not None else 1

    async def chat(self, body: Body, dep: Deployment) -> Body:
        if self._servers is not None or self._server_missing:
            self._ready()
            assert self._servers is not None
            return await self._servers.chat(_server_body(body, dep), dep)
        result = await self._run("create_chat_completion", _messages(body), self._kwargs(body, dep))
        result["model"] = dep.model
        return result

    async def completion(self, body: Body, dep: Deployment) -> Body:
        if self._servers is not None or self._server_missing:
            self._ready()
            assert self._servers is not None
            return await self._servers.completion(_server_body(body, dep), dep)
        prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
        result = await self._run("create_completion", prompt, self._kwargs(body, dep))
        result["model"] = dep.model
        return result

    def chat_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        if self._servers is not None or self._server_missing:
            self._ready()
            assert self._servers is not None
            return self._servers.stream("chat", _server_body(body, dep), dep)
        return self._stream("create_chat_completion", _messages(body), body, dep, "chat")

    def completion_stream(self, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        if self._servers is not None or self._server_missing:
            self._ready()
            assert self._servers is not None
            return self._servers.stream("completions", _server_body(body, dep), dep)
        prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
        return self._stream("create_completion", prompt, body, dep, "text")

    async def _stream(
        self, fn: str, first: Any, body: Body, dep: Deployment, kind: str
    ) -> AsyncIterator[Body]:
        """Generate in a thread (or the worker process), hand chunks over through a queue;
        stop generating as soon as the consumer goes away."""
        if self._worker is not None:
            async for kind, value in self._worker.stream(fn, first, self._kwargs(body, dep)):
                if kind == "chunk":
                    value["model"] = dep.model
                    yield value
                else:
                    prompt, completion = value
                    yield {
                        "id": f"chatcmpl-{secrets.token_hex(12)}",
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": dep.model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    }
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        kwargs = {**self._kwargs(body, dep), "stream": True}

        def produce() -> None:
            count = 0
            try:
                with self._run_lock:
                    llama = self._llama()
                    started_tokens = None
                    chunks: Iterator[Body] = getattr(llama, fn)(first, **kwargs)
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        if started_tokens is None:
                            started_tokens = llama.n_tokens
                        count += tokens_in(chunk)
                        loop.call_soon_threadsafe(queue.put_nowait, ("chunk", chunk))
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
                    prompt = (
                        started_tokens or llama.n_tokens
                    )  # the prompt, evaluated before the first token
                loop.call_soon_threadsafe(queue.put_nowait, ("end", (prompt, count)))
            except UpstreamError as exc:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            except Exception as exc:  # noqa: BLE001 - surface as an upstream failure
                failure = UpstreamError(
                    f"local model failed: {exc.__class__.__name__}",
                    error_class=ErrorClass.server_error,
                )
                loop.call_soon_threadsafe(queue.put_nowait, ("error", failure))

        worker = threading.Thread(target=produce, name="shipyard-llama", daemon=True)
        worker.start()
        chunk_id = f"chatcmpl-{secrets.token_hex(12)}"
        try:
            while True:
                what, value = await queue.get()
                if what == "error":
                    raise value
                if what == "end":
                    prompt, completion = value
                    yield {
                        "id": chunk_id,
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": dep.model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    }
                    return
                value["model"] = dep.model
                yield value
        finally:
            stop.set()

    async def healthy(self, dep: Deployment) -> bool:
        if self._servers is not None and not await self._servers.healthy():
            return False
        return self._files_present()

    def _ready(self) -> None:
        if self._server_missing:
            raise UpstreamError(
                f"provider '{self.spec.name}': engine 'server' needs llama-server, which is "
                "not installed (scripts/setup.sh builds it; settings: llama_server)",
                error_class=ErrorClass.server_error,
            )
        if not self._files_present():
            raise UpstreamError(
                # the path is the operator's business, not the caller's
                f"provider '{self.spec.name}': its model file is missing",
                error_class=ErrorClass.server_error,
            )

    def _files_present(self) -> bool:
        return (
            bool(self._path)
            and os.path.isfile(self._path)
            and (self._lora is None or os.path.isfile(self._lora))
        )

    async def close(self) -> None:
        if self._servers is not None:
            await self._servers.close()
        if self._worker is not None:
            await asyncio.to_thread(self._worker.close)


def create(spec: ProviderSpec) -> LlamaLocal:
    return LlamaLocal(spec)


def _server_body(body: Body, dep: Deployment) -> Body:
    """What llama-server reads: the request as sent, bounded like the in-process engine
    (512 tokens unless the caller says otherwise; llama-server's own default is the
    whole context)."""
    merged = {**dep.params, **body}
    if merged.get("max_tokens") or merged.get("max_completion_tokens"):
        return body
    return {**body, "max_tokens": 512}


def _messages(body: Body) -> list[Body]:
    """The chat template reads every message's content as text: a message without one (an
    assistant turn that only called tools) gets an empty string, not a template error,
    and a list of parts its text parts joined (the model reads nothing else)."""
    out = []
    for i, m in enumerate(body["messages"]):
        content = m.get("content")
        if not isinstance(content, str):
            m = {**m, "content": _text(content or (), f"messages[{i}].content")}
        out.append(m)
    return out


def _text(parts: Any, where: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        if part.get("type") != "text":
            raise UpstreamError(
                f"{where}[{j}]: the local model reads text only, not {part.get('type')!r} parts",
                error_class=ErrorClass.bad_request,
            )
        texts.append(part["text"])
    return "".join(texts)
