"""The official `openai` SDK manages and searches knowledge bases through `/v1/files` and
`/v1/vector_stores` unchanged: upload files, create a vector store with them, add
files one at a time and in batches (polled to completion), search with filters, list,
remove, delete; errors come in OpenAI's shape."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import as_key, key_for
from tests.gateway.conftest import Env, make_env
from tests.retrieval.support import pdf


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _client(env: Env, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{env.url}/v1", api_key=key or env.owner_key, max_retries=0)


def test_files_and_vector_stores_through_the_openai_sdk(env: Env) -> None:
    client = _client(env)
    pets = client.files.create(
        file=("pets.md", io.BytesIO(b"# Cats\n\nCats purr and nap in the sun.\n"), "text/markdown"),
        purpose="assistants",
    )
    assert pets.object == "file" and pets.filename == "pets.md" and pets.bytes > 0
    report = client.files.create(
        file=("report.pdf", io.BytesIO(pdf("Revenue grew eleven percent.")), "application/pdf"),
        purpose="assistants",
    )
    assert {f.id for f in client.files.list()} >= {pets.id, report.id}
    assert client.files.retrieve(pets.id).filename == "pets.md"

    store = client.vector_stores.create(name="Support FAQ", file_ids=[pets.id])
    assert store.object == "vector_store" and store.name == "Support-FAQ"
    assert store.file_counts.total == 1
    vs_file = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id,
        file_id=report.id,
        attributes={"team": "finance"},
        poll_interval_ms=100,
    )
    assert vs_file.status == "completed" and vs_file.id == report.id
    code = client.files.create(
        file=("codes.txt", io.BytesIO(b"The door code is ZX-4471."), "text/plain"),
        purpose="assistants",
    )
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[code.id, pets.id], poll_interval_ms=100
    )
    assert batch.status == "completed", batch
    assert batch.file_counts.completed + batch.file_counts.failed == batch.file_counts.total

    got = client.vector_stores.retrieve(store.id)
    assert got.file_counts.completed == 3 and got.status == "completed"
    assert {f.id for f in client.vector_stores.files.list(vector_store_id=store.id)} == {
        pets.id,
        report.id,
        code.id,
    }
    results = client.vector_stores.search(
        vector_store_id=store.id, query="kitten", max_num_results=2
    )
    assert results.data[0].filename == "pets.md" and results.data[0].file_id == pets.id
    assert results.data[0].content[0].text.startswith("# Cats")
    found = client.vector_stores.search(
        vector_store_id=store.id,
        query="money",
        filters={"type": "eq", "key": "team", "value": "finance"},
    )
    assert [d.filename for d in found.data] == ["report.pdf"]
    assert found.data[0].attributes == {"team": "finance"}
    lexical = client.vector_stores.search(vector_store_id=store.id, query="ZX-4471")
    assert lexical.data[0].filename == "codes.txt"

    removed = client.vector_stores.files.delete(vector_store_id=store.id, file_id=code.id)
    assert removed.deleted
    after = client.vector_stores.search(vector_store_id=store.id, query="ZX-4471 door code")
    assert all(d.filename != "codes.txt" for d in after.data)
    assert client.files.delete(code.id).deleted
    assert store.id in {s.id for s in client.vector_stores.list()}
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_errors_are_openai_shaped_and_roles_hold(env: Env) -> None:
    client = _client(env)
    with pytest.raises(openai.AuthenticationError):
        _client(env, "sy-not-a-key").vector_stores.list()
    store = client.vector_stores.create(name="s")
    with pytest.raises(openai.NotFoundError) as missing:
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file_nope")
    assert missing.value.body["type"] == "not_found_error"  # type: ignore[index]
    bad = client.files.create(
        file=("bad.pdf", io.BytesIO(b"%PDF-1.4 nonsense"), "application/pdf"), purpose="assistants"
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.vector_stores.files.create(vector_store_id=store.id, file_id=bad.id)
    assert "bad.pdf" in refused.value.message
    with pytest.raises(openai.BadRequestError):
        client.files.create(
            file=("x.exe", io.BytesIO(b"MZ"), "application/octet-stream"), purpose="assistants"
        )
    with pytest.raises(openai.BadRequestError):
        client.files.create(
            file=("../etc.txt", io.BytesIO(b"x"), "text/plain"), purpose="assistants"
        )
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(
            vector_store_id=store.id, query="x", filters={"type": "gt", "key": "n", "value": 1}
        )
    viewer = _client(env, key_for(env.admin, "viewer"))  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError):
        viewer.vector_stores.create(name="mine")
    app = _client(env, key_for(env.admin, "app"))  # type: ignore[arg-type]
    assert app.vector_stores.search(vector_store_id=store.id, query="anything").data == []
    with pytest.raises(openai.PermissionDeniedError):
        app.vector_stores.list()
    r = httpx.put(f"{env.url}/v1/vector_stores", headers=as_key(env.owner_key))
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(
        f"{env.url}/v1/vector_stores",
        headers={**as_key(env.owner_key), "content-type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


def test_the_openai_surface_is_in_the_openapi_document(env: Env) -> None:
    doc = env.admin.get("/openapi.json").json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    for path in ("/v1/files", "/v1/files/{file_id}", "/v1/vector_stores",
                 "/v1/vector_stores/{vector_store_id}/file_batches",
                 "/v1/vector_stores/{vector_store_id}/search"):  # fmt: skip
        assert path in paths, path
    search = paths["/v1/vector_stores/{vector_store_id}/search"]["post"]
    ref = search["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schemas[ref.rsplit("/", 1)[-1]]["properties"]["max_num_results"]["maximum"] == 50
    assert "/api/pipelines/{ref}/invoke" in paths or any("invoke" in p for p in paths)
