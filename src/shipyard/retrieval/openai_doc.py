"""The OpenAPI part for OpenAI's Files and Vector Stores API (`/v1/files`,
`/v1/vector_stores`), merged into `/openapi.json` (`Capability.openapi`). Request bodies
are the pydantic models the app parses; replies are OpenAI's objects."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shipyard.http.openai_app import OBJECTS, Schema, operation
from shipyard.http.openai_app import list_of as _list_of
from shipyard.http.openai_app import obj as _obj
from shipyard.http.openai_app import path_params as _params
from shipyard.http.openai_app import ref as _ref

S, N = {"type": "string"}, {"type": "integer"}
OBJECT_SCHEMAS: dict[str, Schema] = {
    "OpenAIFile": _obj(
        id=S, object={"type": "string", "enum": ["file"]}, bytes=N, created_at=N,
        filename=S, purpose=S, status=S,
    ),
    "VectorStore": _obj(
        id=S, object={"type": "string", "enum": ["vector_store"]}, name=S, created_at=N,
        status=S, usage_bytes=N, file_counts={"type": "object"}, metadata={"type": "object"},
    ),
    "VectorStoreFile": _obj(
        id=S, object={"type": "string", "enum": ["vector_store.file"]}, vector_store_id=S,
        status=S, created_at=N, usage_bytes=N, attributes={"type": "object"},
        last_error={"type": ["object", "null"]},
    ),
    "VectorStoreFileBatch": _obj(
        id=S, object={"type": "string", "enum": ["vector_store.files_batch"]},
        vector_store_id=S, status=S, created_at=N, file_counts={"type": "object"},
    ),
    "VectorStoreSearchResults": _obj(
        object={"type": "string", "enum": ["vector_store.search_results.page"]},
        search_query={"type": "array", "items": S},
        data={"type": "array", "items": _obj(
            file_id=S, filename=S, score={"type": "number"}, attributes={"type": "object"},
            content={"type": "array", "items": _obj(type=S, text=S)},
        )},
        has_more={"type": "boolean"},
    ),
    "Deleted": _obj(id=S, object=S, deleted={"type": "boolean"}),
}  # fmt: skip


def _op(summary: str, reply: Schema, body: str | None = None, **extra: Any) -> Schema:
    return operation("openai: files and vector stores", summary, reply, body, **extra)


def document() -> Schema:
    from shipyard.retrieval.openai_api import (
        BatchIn,
        StoreFileIn,
        StoreIn,
        StoreSearchIn,
        StoreUpdate,
    )

    bodies: dict[str, type[BaseModel]] = {
        "VectorStoreCreate": StoreIn,
        "VectorStoreUpdate": StoreUpdate,
        "VectorStoreFileCreate": StoreFileIn,
        "VectorStoreFileBatchCreate": BatchIn,
        "VectorStoreSearch": StoreSearchIn,
    }
    schemas = dict(OBJECT_SCHEMAS)
    for name, model in bodies.items():
        schemas[name] = model.model_json_schema(ref_template=OBJECTS + "{model}")
    upload = {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file", "purpose"],
            "properties": {"file": {"type": "string", "format": "binary"}, "purpose": S},
        }}},
    }  # fmt: skip
    vs, f = _params("vector_store_id"), _params("vector_store_id", "file_id")
    b = _params("vector_store_id", "batch_id")
    store, files = (
        "/v1/vector_stores/{vector_store_id}",
        "/v1/vector_stores/{vector_store_id}/files",
    )
    batch = store + "/file_batches/{batch_id}"
    paths = {
        "/v1/files": {
            "post": _op("Upload a file", _ref("OpenAIFile"), requestBody=upload),
            "get": _op("List files", _list_of("OpenAIFile")),
        },
        "/v1/files/{file_id}": {
            "get": _op("Retrieve a file", _ref("OpenAIFile"), parameters=_params("file_id")),
            "delete": _op("Delete a file", _ref("Deleted"), parameters=_params("file_id")),
        },
        "/v1/vector_stores": {
            "post": _op("Create a vector store (a knowledge base)", _ref("VectorStore"),
                        "VectorStoreCreate"),
            "get": _op("List vector stores", _list_of("VectorStore")),
        },
        store: {
            "get": _op("Retrieve a vector store", _ref("VectorStore"), parameters=vs),
            "post": _op("Modify a vector store", _ref("VectorStore"), "VectorStoreUpdate",
                        parameters=vs),
            "delete": _op("Delete a vector store", _ref("Deleted"), parameters=vs),
        },
        files: {
            "post": _op("Add a file (indexed in the background)", _ref("VectorStoreFile"),
                        "VectorStoreFileCreate", parameters=vs),
            "get": _op("List a vector store's files", _list_of("VectorStoreFile"), parameters=vs),
        },
        files + "/{file_id}": {
            "get": _op("Retrieve a vector store file", _ref("VectorStoreFile"), parameters=f),
            "delete": _op("Remove a file from a vector store", _ref("Deleted"), parameters=f),
        },
        store + "/file_batches": {
            "post": _op("Add files in one batch (an ingestion)", _ref("VectorStoreFileBatch"),
                        "VectorStoreFileBatchCreate", parameters=vs),
        },
        batch: {"get": _op("Retrieve a file batch", _ref("VectorStoreFileBatch"), parameters=b)},
        batch + "/cancel": {
            "post": _op("Cancel a file batch", _ref("VectorStoreFileBatch"), parameters=b),
        },
        store + "/search": {
            "post": _op("Search a vector store (hybrid: vector and full text, fused)",
                        _ref("VectorStoreSearchResults"), "VectorStoreSearch", parameters=vs),
        },
    }  # fmt: skip
    return {"paths": paths, "components": {"schemas": schemas}}
