"""The `/v1` face: a pure ASGI app, dispatched before FastAPI's router so the hot path
pays for no framework machinery. It authenticates from the in-memory key cache, reads
and checks the body, hands a `Call` to the `Gateway` and writes OpenAI-shaped replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.audit.service import Entry, record_now
from shipyard.errors import Unauthenticated
from shipyard.gateway import validate
from shipyard.gateway.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NotPermitted,
)
from shipyard.gateway.service import Call, Gateway, Reply, StreamReply
from shipyard.identity.actor import Actor
from shipyard.identity.authn import KeyAuthenticator
from shipyard.store import Database

log = logging.getLogger("shipyard.gateway.http")
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

Handler = Callable[["GatewayApp", Scope, Receive, Send, Actor, dict[bytes, bytes]], Awaitable[None]]

# method, path, permission: the route-permission test reads this table too.
ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/v1/chat/completions", "gateway:call"),
    ("POST", "/v1/completions", "gateway:call"),
    ("POST", "/v1/embeddings", "gateway:call"),
    ("GET", "/v1/models", "gateway:call"),
    ("GET", "/v1/models/{model}", "gateway:call"),
    ("POST", "/v1/messages", "gateway:call"),
]


class GatewayApp:
    def __init__(
        self,
        gateway: Gateway,
        keys: KeyAuthenticator,
        db: Database,
        *,
        max_body: int,
        allowed_hosts: list[str],
        anthropic: Any = None,
    ) -> None:
        self.gateway = gateway
        self.keys = keys
        self.db = db
        self.max_body = max_body
        self.hosts = {h.lower().encode() for h in allowed_hosts}
        self.any_host = b"*" in self.hosts
        self.anthropic = anthropic
        self.handlers: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): _endpoint("chat", "chat", validate.chat),
            ("POST", "/v1/completions"): _endpoint("completions", "chat", validate.completion),
            ("POST", "/v1/embeddings"): _endpoint("embeddings", "embedding", validate.embeddings),
            ("GET", "/v1/models"): _models,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        anthropic_shape = scope["path"] == "/v1/messages"
        try:
            host = headers.get(b"host", b"").lower()
            if not self.any_host and _hostname(host) not in self.hosts:
                raise InvalidRequest("the Host header is not one this server serves")
            handler = self._handler(scope)
            actor = await self._authenticate(scope, headers)
            if not actor.can("gateway:call"):
                await self._audit_denied(scope, actor, 403, "role lacks gateway:call")
                raise NotPermitted(
                    f"the {actor.role.value} role cannot call the gateway", code="permission_denied"
                )
            await handler(self, scope, receive, send, actor, headers)
        except GatewayError as exc:
            await self._error(send, exc, anthropic_shape)
        except Exception:  # a bug: log it, answer without a stack trace
            log.exception("gateway failure on %s", scope["path"])
            await self._error(
                send, GatewayError("the gateway failed; see its log"), anthropic_shape
            )

    def _handler(self, scope: Scope) -> Handler:
        method, path = scope["method"], scope["path"]
        handler = self.handlers.get((method, path))
        if handler is not None:
            return handler
        if method == "GET" and path.startswith("/v1/models/"):
            return _model_one
        if path == "/v1/messages" and method == "POST" and self.anthropic is not None:
            return self.anthropic  # type: ignore[no-any-return]
        known = {p for _, p in self.handlers} | {"/v1/messages"}
        if path in known:
            raise InvalidRequest(f"{method} is not allowed on {path}", code="method_not_allowed")
        raise ModelNotFound(f"no gateway route for {method} {path}", code="unknown_url")

    async def _authenticate(self, scope: Scope, headers: dict[bytes, bytes]) -> Actor:
        raw = headers.get(b"authorization")
        token = None
        if raw is not None:
            scheme, _, value = raw.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        elif b"x-api-key" in headers:  # the Anthropic SDK's header
            token = headers[b"x-api-key"].decode("latin-1").strip()
        try:
            if not token:
                raise Unauthenticated("no API key: send 'Authorization: Bearer <key>'")
            actor = self.keys.cached(token)
            if actor is None:
                actor = await asyncio.to_thread(self.keys.authenticate, token)
            return actor
        except Unauthenticated as exc:
            await self._audit_denied(scope, None, 401, exc.detail)
            raise AuthenticationFailed(exc.detail) from None

    async def _audit_denied(
        self, scope: Scope, actor: Actor | None, status: int, detail: str
    ) -> None:
        client = scope.get("client")
        entry = Entry(
            actor=actor.ref if actor else "anonymous",
            actor_kind=actor.kind if actor else "anonymous",
            action=f"gateway {scope['method']} {scope['path']}"[:100],
            outcome="denied",
            status=status,
            workspace_id=actor.workspace_id if actor else None,
            target=scope["path"],
            client_addr=client[0] if client else "",
            detail=detail,
        )
        try:
            await asyncio.to_thread(record_now, self.db, entry)
        except Exception:  # noqa: BLE001
            log.exception("could not write audit entry")

    async def read_json(self, receive: Receive, headers: dict[bytes, bytes]) -> Any:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise _too_large(self.max_body)
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json":
            raise InvalidRequest("send the body as application/json", code="unsupported_media_type")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _too_large(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                "the request body is not valid JSON", code="invalid_json"
            ) from None

    async def _error(self, send: Send, exc: GatewayError, anthropic_shape: bool) -> None:
        if anthropic_shape:
            from shipyard.gateway.formats.anthropic import error_body

            body = orjson.dumps(error_body(exc))
        else:
            body = orjson.dumps(exc.body())
        headers = list(JSON_HEADERS)
        if exc.retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
        if exc.status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        try:
            await send({"type": "http.response.start", "status": exc.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception:  # noqa: BLE001 - the response had already started
            pass

    async def reply(self, send: Send, result: Reply) -> None:
        body = result.body if isinstance(result.body, bytes) else orjson.dumps(result.body)
        await send(
            {
                "type": "http.response.start",
                "status": result.status,
                "headers": JSON_HEADERS + result.headers,
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def stream(
        self,
        receive: Receive,
        send: Send,
        result: StreamReply,
        encode: Callable[[dict[str, Any]], bytes] | None = None,
        done: bytes = b"data: [DONE]\n\n",
    ) -> None:
        """Relay chunks as SSE until the end or until the client goes away."""
        encode = encode or _sse
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        chunks = result.chunks
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": SSE_HEADERS + result.headers,
                }
            )
            try:
                async for chunk in chunks:
                    if gone.is_set():
                        break
                    await send(
                        {"type": "http.response.body", "body": encode(chunk), "more_body": True}
                    )
            except Exception as exc:  # the response has started: end it with an error event
                if not isinstance(exc, GatewayError):
                    log.exception("gateway stream failure")
                    exc = GatewayError("the gateway failed mid-stream; see its log")
                payload = orjson.dumps(exc.body())
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + payload + b"\n\n",
                        "more_body": True,
                    }
                )
            if not gone.is_set():
                await send({"type": "http.response.body", "body": done, "more_body": False})
        finally:
            watcher.cancel()
            try:
                await chunks.aclose()  # type: ignore[attr-defined]
            finally:
                await result.finalize()


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _too_large(limit: int) -> GatewayError:
    exc = InvalidRequest(f"the request body exceeds {limit} bytes", code="request_too_large")
    exc.status = 413
    return exc


def _hostname(host: bytes) -> bytes:
    if host.startswith(b"["):
        return host[: host.find(b"]") + 1]
    return host.rsplit(b":", 1)[0] if b":" in host else host


def no_cache(headers: dict[bytes, bytes]) -> bool:
    value = headers.get(b"cache-control", b"").lower()
    return b"no-cache" in value or b"no-store" in value


def _endpoint(api: str, kind: str, check: Callable[[Any], str]) -> Handler:
    """A handler for one OpenAI-shaped call: read, check, route, run, reply."""

    async def handle(
        app: GatewayApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        actor: Actor,
        headers: dict[bytes, bytes],
    ) -> None:
        body = await app.read_json(receive, headers)
        model = check(body)
        call = Call(actor=actor, api=api, body=body, no_cache=no_cache(headers))
        route = app.gateway.route_for(call, model, kind)
        result = await app.gateway.run(call, route)
        if isinstance(result, StreamReply):
            await app.stream(receive, send, result)
        else:
            await app.reply(send, result)

    return handle


def _model_entry(route: Any) -> dict[str, Any]:
    return {
        "id": route.name,
        "object": "model",
        "created": 0,
        "owned_by": "shipyard",
        "kind": route.kind,
        "description": route.description,
    }


def _allowed(app: GatewayApp, actor: Actor) -> Callable[[str], bool]:
    lim = app.gateway.snapshot.limits.get(f"key:{actor.id}")
    if lim is None or lim.allowed_routes is None:
        return lambda name: True
    allowed = set(lim.allowed_routes)
    return lambda name: name in allowed


async def _models(
    app: GatewayApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    actor: Actor,
    headers: dict[bytes, bytes],
) -> None:
    ok = _allowed(app, actor)
    data = [
        _model_entry(r)
        for r in app.gateway.snapshot.visible_routes(actor.workspace_id)
        if ok(r.name)
    ]
    await app.reply(send, Reply({"object": "list", "data": data}, []))


async def _model_one(
    app: GatewayApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    actor: Actor,
    headers: dict[bytes, bytes],
) -> None:
    name = scope["path"][len("/v1/models/") :]
    route = app.gateway.snapshot.route(actor.workspace_id, name)
    if route is None or not _allowed(app, actor)(name):
        raise ModelNotFound(f"the model '{name}' does not exist", param="model")
    await app.reply(send, Reply(_model_entry(route), []))


class GatewayDispatch:
    """Outermost middleware: `/v1/*` goes straight to the gateway app."""

    def __init__(self, app: ASGIApp, *, gateway_app: Callable[[], GatewayApp | None]) -> None:
        self.app = app
        self.gateway_app = gateway_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            target = self.gateway_app()
            if target is not None:
                await target(scope, receive, send)
                return
        await self.app(scope, receive, send)
