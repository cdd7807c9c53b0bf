"""The OpenAPI document covers the whole platform: FastAPI's routers and the `/v1`
gateway (a pure ASGI app FastAPI never sees), with the bearer scheme on every operation
that needs credentials."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.http.test_route_permissions import PUBLIC

V1 = {
    ("post", "/v1/chat/completions", "CreateChatCompletionRequest"),
    ("post", "/v1/completions", "CreateCompletionRequest"),
    ("post", "/v1/embeddings", "CreateEmbeddingRequest"),
    ("post", "/v1/messages", "CreateMessageRequest"),
    ("get", "/v1/models", None),
    ("get", "/v1/models/{model}", None),
}


def test_the_document_publishes_v1_with_request_schemas(sqlite_client: TestClient) -> None:
    doc = sqlite_client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for method, path, request in V1:
        operation = doc["paths"][path][method]
        assert {"bearer": []} in operation["security"]
        if request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{request}" and request in schemas
    chat = schemas["CreateChatCompletionRequest"]
    assert chat["required"] == ["model", "messages"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A Shipyard API key.",
    }


def test_every_reference_resolves(sqlite_client: TestClient) -> None:
    doc = sqlite_client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    missing = {r for r in refs(doc) if r.rsplit("/", 1)[-1] not in schemas}
    assert not missing


def test_only_public_routes_go_without_credentials(sqlite_client: TestClient) -> None:
    doc = sqlite_client.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            secured = bool(operation.get("security"))
            assert secured != (path in PUBLIC), f"{method} {path}"
