"""Serving a local GGUF model through the gateway against the same runtime called
directly. Prints figures; asserts nothing.

Aggregate completion tokens per second at 1, 2, 4 and 8 concurrent streams: through a
real server (`shipyard up`, the built-in `smollm2` route: SmolLM2-135M-Instruct Q4_1 on
llama-cpp-python in its worker process, `--threads` threads) with streaming
`/v1/chat/completions`, and the floor: llama-cpp-python in this process with the same
model file, threads and requests (one generation at a time: a llama.cpp context is not
thread-safe), after the server stopped. Each request asks for `--tokens` tokens at
temperature 0, asking for a long story (the tokens that came are counted).
Targets: >= 0.9x the direct runtime at every level; >= 2x one stream's throughput at
4 streams (needs continuous batching, which this runtime does not do).

    .venv/bin/python bench/serving.py --threads 2 --tokens 64 --requests 8 [--replicas 2]

`--replicas N` runs N worker processes of the model on the server (`local_replicas`),
the threads shared between them; the floor keeps one runtime with all the threads.

`--engine server` serves the model with llama.cpp's own llama-server (`local_engine:
server`, `--slots` sequences batched at once: continuous batching); the floor is then
the same llama-server binary, started the same way, called directly on its socket.

    .venv/bin/python bench/serving.py --engine server --slots 4 --threads 2 --tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import shipyard_up  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
LEVELS = (1, 2, 4, 8)


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a long story about ship number {i} at sea."}]


async def through_gateway(url: str, key: str, level: int, n: int, tokens: int) -> float:
    """Aggregate streamed completion tokens per second at `level` concurrent streams."""
    counted = 0
    sem = asyncio.Semaphore(level)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal counted
        async with sem:
            body = {"model": "smollm2", "messages": prompt(i), "max_tokens": tokens,
                    "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}}  # fmt: skip
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        chunk = orjson.loads(line[6:])
                        if chunk.get("usage"):
                            counted += int(chunk["usage"]["completion_tokens"])

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        await one(client, -1)  # warm
        counted = 0
        began = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(n)))
        return counted / (time.perf_counter() - began)


def direct(llm: object, level: int, n: int, tokens: int) -> float:
    lock = threading.Lock()
    counted = 0

    def one(i: int) -> None:
        nonlocal counted
        with lock:  # one generation at a time per context
            out = llm.create_chat_completion(  # type: ignore[attr-defined]
                prompt(i), max_tokens=tokens, temperature=0, stream=True
            )
            for chunk in out:
                if chunk["choices"][0]["delta"].get("content"):
                    counted += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        list(pool.map(one, range(n)))
    return counted / (time.perf_counter() - began)


async def direct_server(socket: str, level: int, n: int, tokens: int) -> float:
    """The floor for `--engine server`: llama-server itself, no gateway in between."""
    import aiohttp

    counted = 0
    sem = asyncio.Semaphore(level)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal counted
        async with sem:
            body = {"messages": prompt(i), "max_tokens": tokens, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
            async with session.post("http://llama/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.content:
                    if line.startswith(b"data: {"):
                        chunk = orjson.loads(line[6:])
                        if chunk.get("usage"):
                            counted += int(chunk["usage"]["completion_tokens"])

    connector = aiohttp.UnixConnector(path=socket, force_close=True)  # as the gateway's
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one(session, -1)  # warm
        counted = 0
        began = time.perf_counter()
        await asyncio.gather(*(one(session, i) for i in range(n)))
        return counted / (time.perf_counter() - began)


def server_floor(args: argparse.Namespace) -> dict[int, float]:
    from shipyard.gateway.core.tokenizer import smollm2_path
    from shipyard.gateway.providers.llama_server import ServerArgs, ServerProcess, binary

    found = binary()
    assert found, "llama-server is built by scripts/setup.sh --llama-server"
    server_args = ServerArgs(found, str(smollm2_path()), args.threads, 4096, args.slots)
    server = ServerProcess(server_args, "bench")

    async def run() -> dict[int, float]:
        await server.client()  # started and loaded
        try:
            return {
                level: await direct_server(server.socket, level, max(args.requests, level),
                                           args.tokens)
                for level in LEVELS
            }  # fmt: skip
        finally:
            await server.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument(
        "--replicas", type=int, default=1,
        help="worker processes on the server, --threads shared between them",
    )  # fmt: skip
    parser.add_argument("--engine", choices=("python", "server"), default="python")
    parser.add_argument(
        "--slots", type=int, default=4, help="llama-server's batch (--engine server)"
    )
    args = parser.parse_args()
    os.environ["SHIPYARD_LOCAL_THREADS"] = str(max(1, args.threads // args.replicas))
    os.environ["SHIPYARD_LOCAL_REPLICAS"] = str(args.replicas)
    os.environ["SHIPYARD_LOCAL_ENGINE"] = args.engine
    os.environ["SHIPYARD_LOCAL_SLOTS"] = str(args.slots)
    work = Path(tempfile.mkdtemp(prefix="shipyard-serve-bench-"))
    ours: dict[int, float] = {}
    try:
        print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")
        with shipyard_up(work) as c:
            key = c.headers["Authorization"].split(" ", 1)[1]
            for level in LEVELS:
                ours[level] = asyncio.run(
                    through_gateway(str(c.base_url), key, level, max(args.requests, level),
                                    args.tokens)
                )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.engine == "server":
        floors = server_floor(args)
        print(f"{'streams':>8} {'gateway tok/s':>14} {'llama-server tok/s':>19} {'ratio':>6}")
        for level in LEVELS:
            print(f"{level:>8} {ours[level]:>14.1f} {floors[level]:>19.1f} "
                  f"{ours[level] / floors[level]:>6.2f}")  # fmt: skip
        print(f"gateway at 4 streams / one stream: {ours[4] / ours[1]:.2f}x (target >= 2x)")
        return
    from llama_cpp import Llama

    from shipyard.gateway.core.tokenizer import smollm2_path

    llm = Llama(model_path=str(smollm2_path()), n_ctx=4096, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)  # fmt: skip
    direct(llm, 1, 1, args.tokens)  # warm
    print(f"{'streams':>8} {'gateway tok/s':>14} {'direct tok/s':>13} {'ratio':>6}")
    for level in LEVELS:
        floor = direct(llm, level, max(args.requests, level), args.tokens)
        print(f"{level:>8} {ours[level]:>14.1f} {floor:>13.1f} {ours[level] / floor:>6.2f}")
    print(f"gateway at 4 streams / one stream: {ours[4] / ours[1]:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
