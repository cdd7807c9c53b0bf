"""The `/v1` face: a pure ASGI app, dispatched before FastAPI so the hot path pays for
no framework machinery. It runs the shared edge check, authenticates from the in-memory
key cache, reads the body, hands a `Call` to the `Gateway` and writes OpenAI-shaped
replies (Anthropic-shaped on `/v1/messages`, see `messages.py`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from shipyard.audit.denials import DenialLog
from shipyard.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ShipyardError,
)
from shipyard.gateway.config.specs import RouteSpec
from shipyard.gateway.core import validate
from shipyard.gateway.core.call import (
    CHAT_API,
    COMPLETIONS_API,
    EMBEDDINGS_API,
    Api,
    Call,
    Reply,
    StreamReply,
    traceparent,
)
from shipyard.gateway.core.service import Gateway
from shipyard.http.middleware import EdgeCheck
from shipyard.http.render import Shape, openai_body, render
from shipyard.identity.actor import Actor
from shipyard.identity.authn import KeyAuthenticator
from shipyard.identity.keygate import KeyGate

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
        denials: DenialLog,
        *,
        edge: EdgeCheck,
        handlers: dict[tuple[str, str], Handler] | None = None,
    ) -> None:
        self.gateway = gateway
        self.keys = keys
        self.denials = denials
        self.gate = KeyGate(keys, denials, face="gateway")
        self.edge = edge
        self.handlers: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): endpoint(CHAT_API),
            ("POST", "/v1/completions"): endpoint(COMPLETIONS_API),
            ("POST", "/v1/embeddings"): endpoint(EMBEDDINGS_API),
            ("GET", "/v1/models"): _models,
            **(handlers or {}),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shape = Shape.anthropic if scope["path"] == "/v1/messages" else Shape.openai
        try:
            rejection, _ = self.edge.check(scope)
            if rejection is not None:
                raise rejection
            handler = self._handler(scope)
            headers: dict[bytes, bytes] = dict(scope["headers"])
            actor = await self.gate.admit(scope, headers, "gateway:call", "call the gateway")
            await handler(self, scope, receive, send, actor, headers)
        except ShipyardError as exc:
            await self._error(send, exc, shape)
        except Exception:  # a bug: log it, answer without a stack trace
            log.exception("gateway failure on %s", scope["path"])
            await self._error(send, ShipyardError("the gateway failed; see its log"), shape)

    def _handler(self, scope: Scope) -> Handler:
        method, path = scope["method"], scope["path"]
        handler = self.handlers.get((method, path))
        if handler is not None:
            return handler
        if method == "GET" and path.startswith("/v1/models/"):
            return _model_one
        if path in {p for _, p in self.handlers}:
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        raise NotFound(f"no gateway route for {method} {path}", code="unknown_url")

    async def call(
        self, api: Api, actor: Actor, body: Any, headers: dict[bytes, bytes]
    ) -> Reply | StreamReply:
        """Check a body for `api`, route it and run it through the gateway."""
        prompt = ""
        if api.name == "chat" and isinstance(body, dict) and "prompt" in body:
            # rendering is bounded (the sandbox's caps) but CPU work: off the event loop
            body, prompt = await asyncio.to_thread(
                self.gateway.expand_prompt, actor.workspace_id, body
            )
        model = api.check(body)
        trace_id, parent = traceparent(headers.get(b"traceparent"))
        call = Call(
            actor=actor,
            api=api,
            body=body,
            no_cache=no_cache(headers),
            trace_id=trace_id,
            parent_span_id=parent,
            prompt=prompt,
        )
        prefix, colon, ref = model.partition(":")
        virtual = self.gateway.virtual.get(prefix) if colon and api.name == "chat" else None
        if virtual is not None:  # another capability's model (`pipeline:name@alias`)
            return await virtual(call, ref)
        return await self.gateway.run(call, self.gateway.route_for(call, model))

    async def read_json(self, receive: Receive) -> Any:
        """The body, parsed; its declared size and type passed the edge check, a chunked
        one is counted here."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidInput("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.edge.max_body:
                raise PayloadTooLarge(f"the request body exceeds {self.edge.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return validate.parse(b"".join(chunks))

    async def _error(self, send: Send, exc: ShipyardError, shape: Shape) -> None:
        status, headers, body = render(exc, shape)
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception:  # noqa: BLE001 - the response had already started
            pass

    async def reply(self, send: Send, result: Reply) -> None:
        body = result.body if isinstance(result.body, bytes) else orjson.dumps(result.body)
        # a length, not chunked encoding: less to frame and to parse
        headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), *result.headers]
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
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
                if not isinstance(exc, ShipyardError):
                    log.exception("gateway stream failure")
                    exc = ShipyardError("the gateway failed mid-stream; see its log")
                payload = orjson.dumps(openai_body(exc))
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
                await chunks.aclose()  # type: ignore[attr-defined]  # the service's relay is an async generator
            finally:
                await result.finalize()


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def no_cache(headers: dict[bytes, bytes]) -> bool:
    value = headers.get(b"cache-control", b"").lower()
    return b"no-cache" in value or b"no-store" in value


def endpoint(api: Api) -> Handler:
    """A handler for one OpenAI-shaped call: read, check, route, run, reply."""

    async def handle(
        app: GatewayApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        actor: Actor,
        headers: dict[bytes, bytes],
    ) -> None:
        result = await app.call(api, actor, await app.read_json(receive), headers)
        if isinstance(result, StreamReply):
            await app.stream(receive, send, result)
        else:
            await app.reply(send, result)

    return handle


def _model_entry(route: RouteSpec) -> dict[str, Any]:
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
    data += await _virtual_models(app, actor)
    await app.reply(send, Reply({"object": "list", "data": data}, []))


async def _virtual_models(app: GatewayApp, actor: Actor, prefix: str = "") -> list[dict[str, Any]]:
    """The models other capabilities serve (`pipeline:name@alias`) that `actor` may
    call: each lists its own, in a thread (they are read from the database)."""
    out: list[dict[str, Any]] = []
    for name, listed in list(app.gateway.virtual_models.items()):
        if not prefix or name == prefix:
            out += await asyncio.to_thread(listed, actor)
    return out


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
    if route is not None and _allowed(app, actor)(name):
        await app.reply(send, Reply(_model_entry(route), []))
        return
    prefix, colon, _ = name.partition(":")
    if colon and prefix in app.gateway.virtual_models:
        for entry in await _virtual_models(app, actor, prefix):
            if entry["id"] == name:
                await app.reply(send, Reply(entry, []))
                return
    shown = name if len(name) <= 200 else name[:200] + "..."  # a URL is echoed, not mirrored
    raise NotFound(f"the model '{shown}' does not exist", param="model", code="model_not_found")
