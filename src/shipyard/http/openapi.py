"""The OpenAPI document served at `/openapi.json`: FastAPI's for the routers, plus the
paths and schemas each capability declares for its pure-ASGI mounts
(`Capability.openapi`, e.g. the gateway's `/v1`), with a bearer security requirement on
every operation that needs credentials."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from shipyard.capability import Capability, resolve

Document = dict[str, Any]
BEARER = {"type": "http", "scheme": "bearer", "description": "A Shipyard API key."}
# RFC 9457, as `shipyard.http.render` writes it: every refusal and failure of the API
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What is wrong, naming the field."},
        "errors": {
            "type": "array",
            "description": "For a 422: each field at fault.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def install(api: FastAPI, capabilities: Sequence[Capability]) -> None:
    """Make `api.openapi()` return the whole platform's document (built once, lazily)."""
    generate = api.openapi
    merged: list[Document] = []

    def openapi() -> Document:
        doc = generate()  # FastAPI's, cached until its routes change
        if not merged or merged[0] is not doc:
            _extend(doc, api, capabilities)
            merged[:] = [doc]
        return doc

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


def _extend(doc: Document, api: FastAPI, capabilities: Sequence[Capability]) -> None:
    public = {route.path for route in _routes(api.routes) if _is_public(route)}
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            if path not in public:
                operation.setdefault("security", [{"bearer": []}])
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "A field is invalid.", "content": PROBLEM}
            responses.setdefault("default", {"description": "A refusal.", "content": PROBLEM})
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = BEARER
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, replaced above
        schemas.pop(name, None)
    for cap in capabilities:
        if cap.openapi is None:
            continue
        part: Document = resolve(cap.openapi)()
        for path, operations in part.get("paths", {}).items():
            if path in doc["paths"]:
                raise RuntimeError(f"OpenAPI: {cap.name} declares {path} twice")
            doc["paths"][path] = operations
        for section, entries in part.get("components", {}).items():
            target = components.setdefault(section, {})
            for name, entry in entries.items():
                if name in target and target[name] != entry:
                    raise RuntimeError(f"OpenAPI: {cap.name} redefines {section}.{name}")
                target[name] = entry


def _routes(routes: Sequence[Any]) -> Iterator[APIRoute]:
    for route in routes:
        nested = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps routers
        if nested is not None:
            yield from _routes(nested.routes)
        elif isinstance(route, APIRoute):
            yield route


def _is_public(route: APIRoute) -> bool:
    pending = list(route.dependant.dependencies)
    while pending:
        dep = pending.pop()
        if getattr(dep.call, "shipyard_public", False):
            return True
        pending.extend(dep.dependencies)
    return False
