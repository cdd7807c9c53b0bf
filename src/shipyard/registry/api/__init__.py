"""The registry's HTTP routes (`/api/registry/...`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi.concurrency import run_in_threadpool

from shipyard.http.deps import Ctx

T = TypeVar("T")


async def change(ctx: Ctx, work: Callable[[], T]) -> T:
    """Run a registry change (its own transaction) off the event loop; when it can move
    gateway traffic this replica reloads at once (others follow the version row)."""
    out = await run_in_threadpool(work)
    await ctx.platform.gateway.reload()
    ctx.platform.services["registry"].outbox.wake()  # its events, to webhooks now
    return out
