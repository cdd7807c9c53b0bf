"""Where a job's worker process runs (settings: `training_backend`): here, as a child
of the server (`local`), or on a Ray cluster (`ray`), where an actor that reserves the
job's threads as CPUs starts the same worker command on its node and hands its output
back. Either way the runner reads the worker's JSON lines, waits for its exit code and
can stop it; nothing else differs."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol


class Launch(Protocol):
    def lines(self) -> AsyncIterator[bytes]: ...

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    @property
    def running(self) -> bool: ...


def command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "shipyard.training.worker", str(spec)]


class LocalLaunch:
    """The worker as a child process of this server."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, spec: Path, extra: dict[str, str], log: Path) -> LocalLaunch:
        import os

        with open(log, "ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *command(spec), stdout=asyncio.subprocess.PIPE, stderr=stderr,
                env={**os.environ, **extra}, limit=1 << 20,
            )  # fmt: skip
        return cls(proc)

    async def lines(self) -> AsyncIterator[bytes]:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            yield line

    async def wait(self) -> int:
        return await self.proc.wait()

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()

    @property
    def running(self) -> bool:
        return self.proc.returncode is None


class _Worker:
    """A Ray actor (threaded: `stop` answers while `read` waits) running the worker
    command on its node. Its output goes through a bounded queue; a full queue blocks
    the reader thread, and so the worker, rather than drop a line."""

    def __init__(self, cmd: list[str], extra: dict[str, str], log: str) -> None:
        import os

        # the node's own environment, with the job's settings and this actor as the
        # worker's parent (it ends with its parent)
        env = {**os.environ, **extra, "SHIPYARD_WORKER_PARENT": str(os.getpid())}
        with open(log, "ab") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=env)
        self.out: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.put(line)
        self.out.put(None)

    def read(self, wait: float = 1.0) -> tuple[list[bytes], bool]:
        """Lines that came (within `wait` seconds of the first), and whether the output
        ended."""
        got: list[bytes] = []
        try:
            first = self.out.get(timeout=wait)
        except queue.Empty:
            return got, False
        for item in (first, *_drain(self.out)):
            if item is None:
                return got, True
            got.append(item)
        return got, False

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _drain(q: queue.Queue[bytes | None], most: int = 1000) -> list[bytes | None]:
    items: list[bytes | None] = []
    with contextlib.suppress(queue.Empty):
        while len(items) < most:
            items.append(q.get_nowait())
    return items


class RayLaunch:
    """The worker on a Ray cluster, in an actor that holds the job's CPUs."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self._ended = False

    @classmethod
    async def start(cls, spec: Path, extra: dict[str, str], log: Path, cpus: int) -> RayLaunch:
        from shipyard import ray_cluster

        await asyncio.to_thread(ray_cluster.connect)
        import ray

        actor_class: Any = ray.remote(_Worker)
        actor = actor_class.options(num_cpus=cpus, max_concurrency=2)
        return cls(actor.remote(command(spec), extra, str(log)))

    async def lines(self) -> AsyncIterator[bytes]:
        while not self._ended:
            got, self._ended = await self.actor.read.remote()
            for line in got:
                yield line

    async def wait(self) -> int:
        code: int = await self.actor.wait.remote()
        self._ended = True
        self._release(0)
        return code

    def terminate(self) -> None:
        """Stop the worker, then let the actor go (its CPUs return to the cluster)."""
        if self.actor is None:
            return
        self._ended = True
        with contextlib.suppress(Exception):  # an actor already gone
            self.actor.stop.remote()
        self._release(12)  # after the stop: killing the actor first would orphan its child

    def _release(self, after: float) -> None:
        import ray

        actor, self.actor = self.actor, None
        if actor is not None:
            threading.Timer(after, _kill, (ray, actor)).start()

    @property
    def running(self) -> bool:
        return self.actor is not None


def _kill(ray: Any, actor: Any) -> None:
    with contextlib.suppress(Exception):
        ray.kill(actor)
