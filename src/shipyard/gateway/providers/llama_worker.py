"""Running a GGUF model in a worker process (`options: {"worker": true}` on a llama_cpp
provider): a crash or a stuck generation stays out of the server's interpreter, and the
model's work never contends for the server's GIL. One request at a time over a pipe."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

from shipyard.errors import ErrorClass, UpstreamError

Body = dict[str, Any]


def _serve(
    conn: Connection, path: str, threads: int, n_ctx: int, lora: str | None = None
) -> None:  # pragma: no cover - child
    from llama_cpp import Llama

    model = Llama(
        model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
        lora_path=lora, verbose=False,
    )  # fmt: skip
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        fn, first, kwargs = message
        try:
            if not kwargs.get("stream"):
                conn.send(("done", getattr(model, fn)(first, **kwargs)))
                continue
            count, started = 0, None
            chunks = getattr(model, fn)(first, **kwargs)
            for chunk in chunks:
                if conn.poll() and conn.recv() == "stop":
                    break
                if started is None:
                    started = model.n_tokens
                count += tokens_in(chunk)
                conn.send(("chunk", chunk))
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            conn.send(("done", (started or model.n_tokens, count)))  # prompt evaluated first
        except ValueError as exc:
            cls = "context_length" if "context" in str(exc) else "bad_request"
            conn.send(("error", (cls, str(exc)[:300])))
        except Exception as exc:  # noqa: BLE001
            conn.send(("error", ("server_error", f"local model failed: {exc.__class__.__name__}")))


class LlamaWorker:
    def __init__(self, path: str, threads: int, n_ctx: int, lora: str | None = None) -> None:
        self._args = (path, threads, n_ctx, lora)
        self._proc: Any = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._start_lock = threading.Lock()

    def _ensure(self) -> Connection:
        with self._start_lock:
            if self._proc is None or not self._proc.is_alive():
                ctx = multiprocessing.get_context("spawn")
                parent, child = ctx.Pipe()
                self._proc = ctx.Process(
                    target=_serve,
                    args=(child, *self._args),
                    daemon=True,
                    name="shipyard-llama-worker",
                )
                self._proc.start()
                child.close()
                self._conn = parent
            assert self._conn is not None
            return self._conn

    @staticmethod
    def _recv(conn: Connection) -> tuple[str, Any]:
        try:
            return conn.recv()  # type: ignore[no-any-return]  # the worker sends (tag, value) pairs
        except EOFError:
            return ("error", ("server_error", "the model worker exited"))

    async def call(self, fn: str, first: Any, kwargs: Body) -> Body:
        async with self._lock:
            conn = await asyncio.to_thread(self._ensure)
            conn.send((fn, first, kwargs))
            kind, value = await asyncio.to_thread(self._recv, conn)
        if kind == "error":
            raise UpstreamError(value[1], error_class=ErrorClass(value[0]))
        return value  # type: ignore[no-any-return]  # a completion dict from the worker

    async def stream(self, fn: str, first: Any, kwargs: Body) -> AsyncIterator[tuple[str, Any]]:
        async with self._lock:
            conn = await asyncio.to_thread(self._ensure)
            conn.send((fn, first, {**kwargs, "stream": True}))
            finished = False
            try:
                while True:
                    kind, value = await asyncio.to_thread(self._recv, conn)
                    if kind == "error":
                        finished = True
                        raise UpstreamError(value[1], error_class=ErrorClass(value[0]))
                    yield kind, value
                    if kind == "done":
                        finished = True
                        return
            finally:
                if not finished:  # the client left: stop the generation, drain to "done"
                    conn.send("stop")
                    while True:
                        kind, _ = await asyncio.to_thread(self._recv, conn)
                        if kind in ("done", "error"):
                            break

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._proc = None


class LlamaReplicas:
    """`n` worker processes of one model (`options: {"worker": true, "replicas": n}`):
    each request goes to the replica with the fewest requests in flight, so `n` streams
    generate at once (each replica with its own threads: give each `cores / n`)."""

    def __init__(self, n: int, path: str, threads: int, n_ctx: int, lora: str | None) -> None:
        self.workers = [LlamaWorker(path, threads, n_ctx, lora) for _ in range(max(1, n))]
        self.busy = [0] * len(self.workers)

    def _pick(self) -> int:
        return min(range(len(self.workers)), key=self.busy.__getitem__)

    async def call(self, fn: str, first: Any, kwargs: Body) -> Body:
        i = self._pick()
        self.busy[i] += 1
        try:
            return await self.workers[i].call(fn, first, kwargs)
        finally:
            self.busy[i] -= 1

    async def stream(self, fn: str, first: Any, kwargs: Body) -> AsyncIterator[tuple[str, Any]]:
        i = self._pick()
        self.busy[i] += 1
        try:
            async for item in self.workers[i].stream(fn, first, kwargs):
                yield item
        finally:
            self.busy[i] -= 1

    def in_flight(self) -> int:
        return sum(self.busy)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def tokens_in(chunk: dict[str, Any]) -> int:
    """llama.cpp streams one generated token per chunk that carries text; the first
    (the role) and the last (the finish reason) carry none."""
    choices = chunk.get("choices") or [{}]
    choice = choices[0]
    text = choice.get("text") or (choice.get("delta") or {}).get("content")
    return 1 if text else 0
