"""Health, readiness, Prometheus exposition and the OpenAPI document."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from shipyard.http.deps import Authorized, Ctx, Public

router = APIRouter(tags=["system"])
JSON = "application/json"


@router.get("/healthz", name="system.health")
def healthz(_: None = Public()) -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", name="system.ready")
async def readyz(request: Request, _: None = Public()) -> Response:
    platform = request.app.state.platform
    ok = platform.started and await run_in_threadpool(platform.db.ping)
    body = {"status": "ready" if ok else "unavailable", "store": "ok" if ok else "unreachable"}
    return Response(orjson.dumps(body), status_code=200 if ok else 503, media_type=JSON)


@router.get("/metrics", name="system.metrics")
def metrics(ctx: Ctx = Authorized("metrics:read")) -> Response:
    return Response(generate_latest(ctx.platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", name="system.openapi", include_in_schema=False)
def openapi(request: Request, _: Ctx = Authorized("api:schema")) -> Response:
    return Response(orjson.dumps(request.app.openapi()), media_type=JSON)
