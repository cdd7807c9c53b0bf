"""Local models on llama.cpp's own server (`local_engine: server`): the built-in route
answers through llama-server processes that batch `local_slots` sequences at once
(continuous batching, seen on the server's own /slots), behind `local_replicas`
processes; a server that dies is started again; a missing binary is a clear error."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from openai import OpenAI

from shipyard.gateway.providers.llama_server import binary
from tests.gateway.conftest import Env, make_env

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(binary() is None, reason="llama-server is built by scripts/setup.sh --test"),
]
ASK = {"model": "smollm2", "temperature": 0, "messages": [{"role": "user", "content": "Hi!"}]}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(
        tmp_path, local_engine="server", local_slots=4, local_threads=1, local_replicas=1
    )


def _provider(env: Env) -> Any:
    gateway = env.app.state.platform.services["gateway"]
    route = gateway.snapshot.route(None, "smollm2")
    return gateway.pool.get(route.deployments[0].provider)


def _slots(socket: str) -> list[dict[str, Any]]:
    async def get() -> list[dict[str, Any]]:
        connector = aiohttp.UnixConnector(path=socket)
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.get("http://llama-server/slots") as resp,
        ):
            assert resp.status == 200
            return orjson.loads(await resp.read())  # type: ignore[no-any-return]

    return asyncio.run(get())


def test_the_builtin_model_answers_through_llama_server(env: Env) -> None:
    client = OpenAI(base_url=env.url + "/v1", api_key=env.owner_key, max_retries=0)
    reply = client.chat.completions.create(**ASK, max_tokens=12)
    assert reply.choices[0].message.content and reply.model == "SmolLM2-135M-Instruct"
    assert reply.usage is not None and reply.usage.completion_tokens <= 12
    chunks = list(client.chat.completions.create(
        **ASK, max_tokens=12, stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 12
    # JSON mode: llama-server constrains the output with a grammar
    reply = client.chat.completions.create(
        **{**ASK, "messages": [{"role": "user", "content": "A user as JSON."}]},
        max_tokens=48, response_format={"type": "json_object"},
    )  # fmt: skip
    assert (reply.choices[0].message.content or "").lstrip().startswith("{")
    provider = _provider(env)
    assert provider.slots == 4 and provider._servers.servers[0].alive()
    records = env.records(route="smollm2")
    assert len(records) == 3 and all(r["status"] == 200 for r in records)


def test_concurrent_streams_batch_in_one_server(env: Env) -> None:
    """Four streams at once run in four slots of one process at the same time."""
    started = threading.Barrier(5)
    seen: list[int] = []

    def stream(i: int) -> str:
        parts = []
        ask = [{"role": "user", "content": f"Tell a long story about {i} cats."}]
        body = {**ASK, "max_tokens": 120, "stream": True, "messages": ask}
        with httpx.Client(base_url=env.url, timeout=60) as c, c.stream(
            "POST", "/v1/chat/completions", json=body,
            headers={"Authorization": f"Bearer {env.owner_key}"},
        ) as r:  # fmt: skip
            assert r.status_code == 200
            for n, line in enumerate(r.iter_lines()):
                if n == 3:
                    started.wait(timeout=60)
                    started.wait(timeout=60)  # until the slots were read
                parts.append(line)
        return "".join(parts)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stream, i) for i in range(4)]
        started.wait(timeout=60)
        socket = _provider(env)._servers.servers[0].socket
        seen.append(sum(1 for s in _slots(socket) if s.get("is_processing")))
        started.wait(timeout=60)
        outs = [f.result() for f in futures]
    assert seen == [4]
    assert all("[DONE]" in out for out in outs)


def test_a_server_that_died_is_started_again(env: Env) -> None:
    first = env.admin.post("/v1/chat/completions", json={**ASK, "max_tokens": 4})
    assert first.status_code == 200, first.text
    server = _provider(env)._servers.servers[0]
    os.kill(server._proc.pid, signal.SIGKILL)
    server._proc.wait()
    assert not server.alive()
    again = env.admin.post("/v1/chat/completions", json={**ASK, "max_tokens": 4})
    assert again.status_code == 200, again.text
    assert server.alive()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(
        tmp_path, local_engine="server", local_slots=1, local_threads=1, local_replicas=2
    )


def test_replicas_spread_over_processes(replicated: Env) -> None:
    def call(i: int) -> httpx.Response:
        return replicated.admin.post("/v1/chat/completions", json={
            **ASK, "max_tokens": 24,
            "messages": [{"role": "user", "content": f"Count to {i + 5}."}]})  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(call, range(2)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    servers = _provider(replicated)._servers
    assert servers.slots == 2
    assert [s.alive() for s in servers.servers] == [True, True]
    assert len({s._proc.pid for s in servers.servers}) == 2


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    for env in make_env(
        tmp_path, local_engine="server", llama_server=str(tmp_path / "no-such-llama-server")
    ):
        r = env.admin.post("/v1/chat/completions", json={**ASK, "max_tokens": 4})
        assert r.status_code >= 500 and "llama-server" in r.text, r.text
        assert "Traceback" not in r.text and str(tmp_path) not in r.text
