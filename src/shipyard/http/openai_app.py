"""`OpenAIStyleApp`: the frame of Shipyard's OpenAI-compatible resource APIs (files, vector
stores, fine-tuning jobs) so that the official `openai` SDK works against them unchanged.
A capability lists its routes as (path, method, handler, permission, what the caller is
doing); the frame does the edge's checks, 404 and 405 for what no route takes, API-key
authentication and authorization (deny by default), a bounded body, and errors in
OpenAI's error shape. A Starlette app, mounted before FastAPI.

    class Widgets(OpenAIStyleApp):
        face = "widgets"

        def routes(self):
            return [("/v1/widgets", "GET", self.listing, "widgets:read", "list widgets")]

        async def listing(self, request, actor):
            return page([...])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from shipyard.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ShipyardError,
)
from shipyard.http.render import headers_for, openai_body
from shipyard.identity.actor import Actor
from shipyard.identity.keygate import KeyGate
from shipyard.inputs import invalid

if TYPE_CHECKING:
    from shipyard.platform import Platform

Handler = Callable[[Request, Actor], Awaitable[Any]]
Schema = dict[str, Any]
OBJECTS = "#/components/schemas/"
RouteRow = tuple[str, str, Handler, str, str]  # path, method, handler, permission, doing


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def page(data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    """OpenAI's list object."""
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def parsed(model: type[BaseModel], raw: bytes) -> Any:
    """A JSON body checked against `model` (a 400 naming the field otherwise)."""
    try:
        value = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON ({exc})") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc) from None


class OpenAIStyleApp:
    face = "openai"  # names the API in denial records

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.gate = KeyGate(platform.keys, platform.denials, face=self.face)
        self.app = Starlette(
            routes=[
                Route(path, self._route(handler, perm, doing), methods=[method])
                for path, method, handler, perm, doing in self.routes()
            ]
        )

    def routes(self) -> list[RouteRow]:
        raise NotImplementedError

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        refused = self._refusal(scope)
        if refused is not None:
            await self.error(refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Any) -> ShipyardError | None:
        """The edge's checks (hosts, body size), then an unknown path (404) or method (405)."""
        try:
            rejection, _ = self.platform.edge.check(scope)
        except ShipyardError as exc:
            return exc
        if rejection is not None:
            return rejection
        found = {route.matches(scope)[0] for route in self.app.routes}
        if Match.FULL in found:
            return None
        if Match.PARTIAL in found:
            return MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}")
        return NotFound(f"no route for {scope['method']} {scope['path']}")

    @staticmethod
    def error(exc: ShipyardError) -> Response:
        return Response(
            orjson.dumps(openai_body(exc)),
            status_code=exc.status,
            media_type="application/json",
            headers={k.decode(): v.decode() for k, v in headers_for(exc)},
        )

    def _route(
        self, handler: Handler, permission: str, doing: str
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                headers = dict(request.scope["headers"])
                actor = await self.gate.admit(request.scope, headers, permission, doing)
                result = await handler(request, actor)
            except ShipyardError as exc:
                return self.error(exc)
            return result if isinstance(result, Response) else json_response(result)

        return endpoint

    async def read(self, request: Request) -> bytes:
        """The body, up to the edge's limit (a 413 past it)."""
        limit = self.platform.edge.max_body
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
        return bytes(body)

    def audit(self, s: Any, actor: Actor, action: str, target: str) -> None:
        from shipyard.audit.service import Entry, record

        record(
            s,
            Entry(
                actor=actor.ref, actor_kind=actor.kind, action=action, outcome="success",
                status=200, workspace_id=actor.workspace_id, target=target,
            ),
        )  # fmt: skip


# the OpenAPI document of such an app (`Capability.openapi`) --------------------------------


def ref(name: str) -> Schema:
    return {"$ref": OBJECTS + name}


def obj(**properties: Schema) -> Schema:
    return {"type": "object", "properties": properties}


def list_of(name: str) -> Schema:
    return obj(
        object={"type": "string", "enum": ["list"]},
        data={"type": "array", "items": ref(name)},
        first_id={"type": ["string", "null"]},
        last_id={"type": ["string", "null"]},
        has_more={"type": "boolean"},
    )


def operation(
    tag: str, summary: str, reply: Schema, body: str | None = None, **extra: Any
) -> Schema:
    out: Schema = {
        "tags": [tag],
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": reply}}},
            "default": {"description": "An error, in OpenAI's shape."},
        },
        **extra,
    }
    if body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    return out


def path_params(*names: str) -> list[Schema]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
