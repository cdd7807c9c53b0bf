"""`create_app(settings)` builds one ASGI app with every face of the platform:
/v1 gateway, /api platform API, / web UI, /metrics, /healthz, /readyz."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard import __version__
from shipyard.audit.router import router as audit_router
from shipyard.gateway.anthropic_api import messages_handler
from shipyard.gateway.asgi import GatewayApp, GatewayDispatch
from shipyard.gateway.router import router as gateway_router
from shipyard.http import problems
from shipyard.http.metrics import MetricsMiddleware
from shipyard.http.middleware import EdgeGuard
from shipyard.http.system import router as system_router
from shipyard.identity.router import router as identity_router
from shipyard.platform import Platform
from shipyard.settings import Settings, load_settings
from shipyard.ui.gateway import router as ui_gateway_router
from shipyard.ui.router import router as ui_router

STATIC = Path(__file__).parent / "ui" / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    platform = Platform(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(platform.start)
        await platform.gateway.start()
        try:
            yield
        finally:
            await platform.gateway.stop()
            await run_in_threadpool(platform.stop)

    app = FastAPI(
        title="Shipyard",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,  # served behind auth by system.openapi
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform
    problems.install(app)
    for router in (
        system_router,
        identity_router,
        audit_router,
        gateway_router,
        ui_gateway_router,
        ui_router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # Outermost first: metrics see every request, the guard runs before routing.
    app.add_middleware(
        EdgeGuard, allowed_hosts=_hosts(settings), max_body_bytes=settings.max_body_bytes
    )
    app.add_middleware(MetricsMiddleware, metrics=platform.metrics)
    gateway_app = GatewayApp(
        platform.gateway,
        platform.keys,
        platform.db,
        max_body=settings.max_body_bytes,
        allowed_hosts=_hosts(settings),
        anthropic=messages_handler,
    )
    app.state.gateway_app = gateway_app
    app.add_middleware(GatewayDispatch, gateway_app=lambda: gateway_app)
    return app


def _hosts(settings: Settings) -> list[str]:
    hosts = list(settings.allowed_hosts)
    if settings.host not in ("0.0.0.0", "::") and settings.host not in hosts:
        hosts.append(settings.host if ":" not in settings.host else f"[{settings.host}]")
    return hosts


def serve(app: FastAPI) -> ASGIApp:
    """What `shipyard up` serves: `/v1/*` goes straight to the gateway's pure ASGI app,
    everything else (and the lifespan) to FastAPI. Behaviour is the same as `app`'s own
    dispatch middleware; this only skips FastAPI's outer layers on the hot path."""
    gateway_app = app.state.gateway_app

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await gateway_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi
