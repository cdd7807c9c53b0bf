"""A local GGUF model on Ray Serve (`options: {"engine": "ray", "replicas": 2}` on a
llama_cpp provider; settings: `ray_address`): a Serve application of `replicas`
replicas, each holding `n_threads` CPUs and running the model with `ray_engine`
(llama-server's continuous batching when it is built, else llama-cpp-python). The
gateway calls it through its deployment handle, with no HTTP proxy in between; Serve
spreads the calls over the replicas and restarts one that fails its health check. The
application is deployed on first use and deleted with its provider.

Every node must see the model at the same path (DESIGN.md: scale-out engines)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from shipyard.errors import ConfigError, ErrorClass, UpstreamError
from shipyard.gateway.config.specs import Deployment, ProviderSpec

Body = dict[str, Any]


class LlamaReplica:
    """One Serve replica: the model on this node, behind the provider's own code."""

    def __init__(self, spec: ProviderSpec) -> None:
        from shipyard.gateway.providers.llama_local import LlamaLocal

        self.provider = LlamaLocal(spec)

    async def chat(self, body: Body, dep: Deployment) -> Body:
        return await self.provider.chat(body, dep)

    async def completion(self, body: Body, dep: Deployment) -> Body:
        return await self.provider.completion(body, dep)

    async def stream(self, op: str, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        chunks = (
            self.provider.chat_stream(body, dep)
            if op == "chat"
            else self.provider.completion_stream(body, dep)
        )
        async for chunk in chunks:
            yield chunk

    async def check_health(self) -> None:
        """Serve's periodic probe: a replica whose model is gone is replaced."""
        if not await self.provider.healthy(None):  # type: ignore[arg-type]  # unused
            raise RuntimeError("the model's files are missing or its server stopped")


class RayServed:
    """The provider's side: deploys the application once, then calls its handle."""

    def __init__(self, spec: ProviderSpec, threads: int, slots: int) -> None:
        from shipyard.gateway.providers.llama_server import binary

        self.app = f"shipyard-{spec.id}"
        self.replicas = max(1, int(spec.options.get("replicas") or 1))
        self.threads = threads
        inner = spec.options.get("ray_engine") or ("server" if binary() else "python")
        options = {**spec.options, "engine": inner, "replicas": 1}
        if inner == "python":
            options["worker"] = True
        self.inner = replace(spec, options=options)
        self.per_replica = slots if inner == "server" else 1
        self._handle: Any = None
        self._lock = asyncio.Lock()

    @property
    def slots(self) -> int:
        return self.replicas * self.per_replica

    async def _deployed(self) -> Any:
        if self._handle is None:
            async with self._lock:
                if self._handle is None:
                    try:
                        self._handle = await asyncio.to_thread(self._deploy)
                    except ConfigError as exc:
                        raise UpstreamError(str(exc), error_class=ErrorClass.server_error) from None
        return self._handle

    def _deploy(self) -> Any:
        from ray import serve

        from shipyard import ray_cluster

        ray_cluster.serve_started()
        deployment: Any = serve.deployment(
            LlamaReplica,
            name="llama",
            num_replicas=self.replicas,
            ray_actor_options={"num_cpus": self.threads},
            max_ongoing_requests=max(2, 2 * self.per_replica),
            health_check_period_s=10,
        )
        return serve.run(deployment.bind(self.inner), name=self.app, route_prefix=None)

    async def chat(self, body: Body, dep: Deployment) -> Body:
        return await self._once("chat", body, dep)

    async def completion(self, body: Body, dep: Deployment) -> Body:
        return await self._once("completion", body, dep)

    async def _once(self, op: str, body: Body, dep: Deployment) -> Body:
        handle = await self._deployed()
        method = handle.chat if op == "chat" else handle.completion
        try:
            result: Body = await method.remote(body, dep)
        except Exception as exc:  # noqa: BLE001 - Ray wraps what the replica raised
            raise _upstream(exc) from None
        return result

    async def stream(self, op: str, body: Body, dep: Deployment) -> AsyncIterator[Body]:
        handle = await self._deployed()
        try:
            async for chunk in handle.options(stream=True).stream.remote(op, body, dep):
                yield chunk
        except UpstreamError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps what the replica raised
            raise _upstream(exc) from None

    async def healthy(self) -> bool:
        """Serve watches its replicas itself; here: the application is up (or not yet
        deployed, which its first call does)."""
        if self._handle is None:
            return True
        return await asyncio.to_thread(self._running)

    def _running(self) -> bool:
        from ray import serve

        try:
            status = serve.status().applications.get(self.app)
        except Exception:  # noqa: BLE001 - the cluster is unreachable
            return False
        return status is not None and str(status.status) in ("RUNNING", "ApplicationStatus.RUNNING")

    async def close(self) -> None:
        if self._handle is None:
            return
        self._handle = None
        from ray import serve

        with contextlib.suppress(Exception):  # the cluster is gone, and the app with it
            await asyncio.to_thread(serve.delete, self.app)


def _upstream(exc: Exception) -> UpstreamError:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UpstreamError):
        return cause
    if isinstance(exc, UpstreamError):
        return exc
    return UpstreamError(
        f"the model's Ray Serve replica failed ({exc.__class__.__name__})",
        error_class=ErrorClass.server_error,
    )
