"""The one place where exceptions become HTTP responses (RFC 9457 problem bodies).

Failed mutating calls and denied requests are also written to the audit log here, so
no route has to remember to do it."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shipyard.audit.service import record_refusal, refusal
from shipyard.errors import ShipyardError
from shipyard.http.render import PROBLEM, Shape, problem_bytes, render

log = logging.getLogger("shipyard.http")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = problem_bytes(status, title, detail, **extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


def error_response(exc: ShipyardError) -> Response:
    status, headers, body = render(exc, Shape.problem)
    response = Response(body, status_code=status)
    response.raw_headers = headers + [(b"content-length", str(len(body)).encode())]
    return response


def audit_failure(request: Request, status: int, detail: str) -> None:
    """Record a denied request, or a mutating one that failed, once per request."""
    if getattr(request.state, "audited", False):
        return
    denied = status in (401, 403)
    if not denied and request.method in SAFE_METHODS:
        return
    platform = getattr(request.app.state, "platform", None)
    if platform is None:
        return
    actor = getattr(request.state, "actor", None)
    route = request.scope.get("route")
    action = getattr(route, "name", None) or f"{request.method} {request.url.path}"
    request.state.audited = True
    client = request.client.host if request.client else ""
    face = "api" if request.url.path.startswith("/api/") else "ui"
    reason = {401: "unauthenticated", 403: "forbidden"}.get(status, "invalid")
    if actor is None:  # anyone can send these: counted, audited per source and minute
        platform.denials.note(
            face=face,
            reason=reason,
            status=status,
            source=client,
            target=f"{request.method} {request.url.path}",
            detail=detail,
        )
        return
    if denied:
        platform.denials.counted(face, reason)
    entry = refusal(
        actor=actor,
        action=action,
        status=status,
        target=request.url.path,
        client_addr=client,
        detail=detail,
    )
    record_refusal(platform.db, entry)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            errors.append({"field": "body", "message": "not valid JSON"})
            continue
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return summary or "request body is invalid", errors


def install(app: FastAPI) -> None:
    @app.exception_handler(ShipyardError)
    async def _shipyard(request: Request, exc: ShipyardError) -> Response:
        status = exc.status
        if status >= 500:
            log.error("internal error on %s: %s", request.url.path, exc.__class__.__name__)
        else:
            await _audit(request, status, exc.detail)
        if is_browser_page(request) and status in (401, 403):
            return _browser_denial(request, status, exc.detail)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        detail, errors = _validation_detail(exc)
        await _audit(request, 422, detail)
        return problem(422, "Validation failed", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "Request failed")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404:
            detail = f"no route for {request.method} {request.url.path}"
        return problem(exc.status_code, title, detail)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.error("unhandled %s on %s", exc.__class__.__name__, request.url.path, exc_info=exc)
        return problem(500, "Internal error", "the server failed; see its log for details")


def is_browser_page(request: Request) -> bool:
    """A web UI request (not API, gateway, metrics or schema)."""
    path = request.url.path
    if path.startswith(("/api/", "/v1/", "/metrics", "/openapi.json")):
        return False
    return "text/html" in request.headers.get("accept", "") or "hx-request" in request.headers


def _browser_denial(request: Request, status: int, detail: str) -> Response:
    if status == 401:
        if "hx-request" in request.headers:
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)
    body = (
        f"<!doctype html><title>Not allowed</title><p>{escape(detail)}</p>"
        "<p><a href='/'>Back</a></p>"
    )
    return HTMLResponse(body, status_code=403)


async def _audit(request: Request, status: int, detail: str) -> None:
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(audit_failure, request, status, detail)
