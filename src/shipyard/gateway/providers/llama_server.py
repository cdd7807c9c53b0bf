"""llama.cpp's own server (`llama-server`) as a local model's engine
(`options: {"engine": "server", "slots": 4, "replicas": 1}` on a llama_cpp provider):
continuous batching over `slots` sequences in each process, `replicas` processes behind
the fewest-in-flight choice. Each process listens on a Unix socket of its own (nothing
on the network reaches it), starts on first use, is stopped with its provider and dies
with the Shipyard process that started it. The binary is built from the llama.cpp
source that ships in llama-cpp-python's source distribution (scripts/setup.sh), so the
adapters llama.cpp's converter writes and the server that reads them are one version.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from shipyard.errors import ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec
from shipyard.gateway.providers.openai_compat import OpenAICompatible

Body = dict[str, Any]
_START_TIMEOUT = 120.0  # seconds for a process to load its model and answer /health
try:  # loaded before any fork: a child runs nothing but this call before exec
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


_configured = ""  # settings.llama_server, set by the gateway at start (process-wide)


def configure(path: str) -> None:
    """The binary to run (settings: `llama_server`); empty: look for it. Process-wide
    and never part of a provider's options, which an API caller could write."""
    global _configured
    _configured = path


def binary() -> str | None:
    """The llama-server binary: the configured path, else the one setup built into the
    environment, else one on PATH."""
    if _configured:
        return _configured if os.access(_configured, os.X_OK) else None
    built = Path(sys.prefix) / "share" / "shipyard" / "bin" / "llama-server"
    if os.access(built, os.X_OK):
        return str(built)
    return shutil.which("llama-server")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class ServerArgs:
    binary: str
    model: str
    threads: int
    n_ctx: int  # per slot
    slots: int
    lora: str | None = None

    def command(self, socket: str) -> list[str]:
        cmd = [
            self.binary, "--model", self.model, "--host", socket,
            "--parallel", str(self.slots), "--ctx-size", str(self.n_ctx * self.slots),
            "--threads", str(self.threads), "--threads-batch", str(self.threads),
            "--threads-http", str(max(2, self.slots)), "--cont-batching", "--jinja",
            "--no-webui", "--metrics", "--no-warmup",
        ]  # fmt: skip
        if self.lora:
            cmd += ["--lora", self.lora]
        return cmd


class ServerProcess:
    """One llama-server process and an OpenAI-compatible client on its socket."""

    def __init__(self, args: ServerArgs, name: str) -> None:
        self.args = args
        self.name = name
        self.in_flight = 0
        self._folder: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: OpenAICompatible | None = None
        self._lock = asyncio.Lock()

    @property
    def socket(self) -> str:
        assert self._folder is not None
        return os.path.join(self._folder, "llama.sock")

    @property
    def started(self) -> bool:
        return self._proc is not None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def client(self) -> OpenAICompatible:
        if self._client is not None and self.alive():
            return self._client
        async with self._lock:
            if self._client is None or not self.alive():
                await self._start()
            assert self._client is not None
            return self._client

    async def _start(self) -> None:
        await self._stop()
        # a short path: a Unix socket's name is limited to about 100 bytes
        self._folder = tempfile.mkdtemp(prefix="shipyard-llama-")
        log = open(os.path.join(self._folder, "server.log"), "wb")  # noqa: SIM115
        try:
            # started from the event loop's thread: PR_SET_PDEATHSIG fires when the
            # thread that forked ends, and a pool thread ends whenever it likes
            self._proc = subprocess.Popen(
                self.args.command(self.socket), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, close_fds=True,
            )  # fmt: skip
        except OSError as exc:
            raise UpstreamError(
                f"{self.name}: llama-server cannot start ({exc.__class__.__name__})",
                error_class=ErrorClass.server_error,
            ) from None
        finally:
            log.close()
        spec = ProviderSpec(
            id=f"{self.name}-socket", name=self.name, kind="openai", workspace_id=None,
            base_url="http://llama-server/v1", options={"allow_internal": True},
        )  # fmt: skip
        client = OpenAICompatible(spec, unix_socket=self.socket)
        try:
            await self._wait_ready()
        except BaseException:
            await client.close()
            await self._stop()
            raise
        self._client = client

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        connector = aiohttp.UnixConnector(path=self.socket)
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise UpstreamError(
                        f"{self.name}: llama-server exited while loading its model "
                        f"({self._log_tail()})",
                        error_class=ErrorClass.server_error,
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with session.get(
                        "http://llama-server/health", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise UpstreamError(
            f"{self.name}: llama-server did not load its model within {_START_TIMEOUT:.0f} s",
            error_class=ErrorClass.timeout,
        )

    def _log_tail(self) -> str:
        """The server's last words, for the operator (the model's path stays out)."""
        try:
            text = Path(self._folder or "", "server.log").read_text(errors="replace")
        except OSError:
            return "no log"
        lines = [line for line in text.splitlines() if "error" in line.lower()]
        tail = (lines or text.splitlines() or ["no log"])[-1][:200]
        return tail.replace(self.args.model, "<model>")

    async def _stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    async def close(self) -> None:
        async with self._lock:
            await self._stop()


class LlamaServers:
    """`replicas` llama-server processes of one model; a request goes to the one with
    the fewest requests in flight (each runs `slots` of them at once)."""

    def __init__(self, args: ServerArgs, replicas: int, name: str) -> None:
        self.args = args
        self.servers = [ServerProcess(args, f"{name}#{i}") for i in range(max(1, replicas))]

    @property
    def slots(self) -> int:
        return self.args.slots * len(self.servers)

    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.servers)

    def _pick(self) -> ServerProcess:
        return min(self.servers, key=lambda s: s.in_flight)

    async def chat(self, body: Body, dep: Deployment) -> Body:
        return await self._once("chat", body, dep)

    async def completion(self, body: Body, dep: Deployment) -> Body:
        return await self._once("completion", body, dep)

    async def _once(self, op: str, body: Body, dep: Deployment) -> Body:
        server = self._pick()
        server.in_flight += 1
        try:
            client = await server.client()
            call = client.chat if op == "chat" else client.completion
            result = await call(body, dep)
        finally:
            server.in_flight -= 1
        result["model"] = dep.model
        return result

    async def stream(self, op: str, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        server = self._pick()
        server.in_flight += 1
        try:
            client = await server.client()
            chunks = (
                client.chat_stream(body, dep)
                if op == "chat"
                else client.completion_stream(body, dep)
            )
            async for chunk in chunks:
                chunk["model"] = dep.model
                yield chunk
        finally:
            server.in_flight -= 1

    async def healthy(self) -> bool:
        """Every process that was started still runs (one not started yet is fine)."""
        return all(s.alive() or not s.started for s in self.servers)

    async def close(self) -> None:
        for server in self.servers:
            await server.close()
