"""What the fuzzers found, pinned as plain examples: each body or URL answered a 500
(or a 502, or a refusal naming the wrong field) before its fix."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from tests.fuzz.conftest import World

USER = [{"role": "user", "content": "hi"}]
DEEP = (
    b'{"a":' * 150 + b"[" * 150 + b"]" * 150 + b"}" * 150
)  # 300 levels: parses, cannot be written


def raw(body: dict[str, Any], splice: bytes | None = None) -> bytes:
    """`body` serialized; a `"@"` value replaced by `splice` as raw bytes."""
    out = orjson.dumps(body)
    return out if splice is None else out.replace(b'"@"', splice)


V1 = [
    # a content part's text that is not a string: the Anthropic and Gemini wire formats
    # joined the texts (TypeError), token counting too
    (
        "/v1/chat/completions",
        raw(
            {
                "model": "fuzz-claude",
                "messages": [
                    {
                        "role": "tool",
                        "tool_call_id": "1",
                        "content": [{"type": "text", "text": None}],
                    }
                ],
            }
        ),
        "messages[0].content[0].text",
    ),
    (
        "/v1/chat/completions",
        raw(
            {
                "model": "fuzz-gemini",
                "messages": [{"role": "system", "content": [{"type": "text", "text": []}]}, *USER],
            }
        ),
        "messages[0].content[0].text",
    ),
    (  # a part of a type Shipyard passes through still may not carry a non-string text
        "/v1/chat/completions",
        raw(
            {
                "model": "fuzz-openai",
                "messages": [{"role": "user", "content": [{"type": "x", "text": 1}]}],
            }
        ),
        "messages[0].content[0].text",
    ),
    # a role that is an object: unhashable, the role check itself raised
    (
        "/v1/chat/completions",
        raw({"model": "fuzz-openai", "messages": [{"role": {}, "content": "x"}]}),
        "messages[0].role",
    ),
    # embeddings did not check `user`: an object reached the limits' scope keys
    ("/v1/embeddings", raw({"model": "fuzz-embed", "input": "x", "user": {"a": 1}}), "user"),
    # 300 levels parse, but orjson cannot write them to the provider (TypeError)
    (
        "/v1/embeddings",
        raw({"model": "fuzz-embed", "input": "x", "dimensions": "@"}, DEEP),
        "dimensions",
    ),
    (
        "/v1/chat/completions",
        raw(
            {"model": "fuzz-openai", "messages": USER, "tools": "@"}, b"[" * 10_000 + b"]" * 10_000
        ),
        "tools",
    ),
    # a NUL in `user` is stored in the request record: PostgreSQL refuses the whole batch
    (
        "/v1/chat/completions",
        raw({"model": "fuzz-openai", "messages": USER, "user": "a\x00b"}),
        "user",
    ),
    # bodies that are not JSON now say where they stop being JSON
    ("/v1/embeddings", raw({"model": "fuzz-embed", "input": "@"}, b'"\xff"'), "input"),
    ("/v1/embeddings", raw({"model": "fuzz-embed", "input": "@"}, b'"\\ud800"'), "input"),
    (
        "/v1/chat/completions",
        raw({"model": "fuzz-openai", "messages": USER, "seed": "@"}, b"1e400"),
        "seed",
    ),
]
MESSAGES = [
    # an image block whose source is not an object (AttributeError)
    (
        {"role": "user", "content": [{"type": "image", "source": "x"}]},
        {},
        "messages.0.content.0.source",
    ),
    # a system block whose text is not a string (TypeError joining them)
    (None, {"system": [{"type": "text", "text": False}]}, "system.0.text"),
    # refusals named the converted body's field (`stop`, `messages[1].content`)
    (None, {"stop_sequences": [None]}, "stop_sequences"),
    (
        {"role": "user", "content": [{"type": "tool_use", "id": "1", "name": "f", "input": {}}]},
        {},
        "messages.0.content.0",
    ),
    (None, {"metadata": {"user_id": 5}}, "metadata.user_id"),
]


@pytest.mark.parametrize(("path", "body", "field"), V1)
def test_v1_refusals_name_the_field(world: World, path: str, body: bytes, field: str) -> None:
    r = world.v1(path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"].startswith(field), error


@pytest.mark.parametrize(("message", "extra", "field"), MESSAGES)
def test_messages_refusals_name_the_field_as_sent(
    world: World, message: dict[str, Any] | None, extra: dict[str, Any], field: str
) -> None:
    body = {"model": "fuzz-openai", "max_tokens": 5, "messages": [message or USER[0]], **extra}
    r = world.v1("/v1/messages", orjson.dumps(body))
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and field in r.json()["error"]["message"], r.text


def test_a_null_stream_is_no_stream(world: World) -> None:
    """OpenAI's spec allows `stream: null` (and other nullable flags): it was refused."""
    body = {"model": "fuzz-openai", "messages": USER, "stream": None, "logprobs": None}
    r = world.v1("/v1/chat/completions", orjson.dumps(body))
    assert r.status_code == 200, r.text


@pytest.mark.local_model
def test_the_local_model_reads_parts_and_turns_without_content(world: World) -> None:
    """Content parts, an assistant turn with only tool calls, a function turn without
    content: llama.cpp's chat template failed on each (502)."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "function", "name": "f", "content": None},
        {"role": "user", "content": "Bye"},
    ]
    body = {"model": "smollm2", "max_tokens": 2, "messages": messages}
    assert world.v1("/v1/chat/completions", orjson.dumps(body)).status_code == 200
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    body["messages"] = [{"role": "user", "content": [image]}]
    r = world.v1("/v1/chat/completions", orjson.dumps(body))
    assert r.status_code == 400 and "messages[0].content[0]" in r.json()["error"]["message"]


# /api --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/gateway/requests?since=2026-01-01T00:00:00", "since"),
        ("/api/gateway/requests?before=2026-01-01T00:00:00", "before"),
        ("/api/audit?since=2026-01-01T00:00:00", "since"),
        ("/api/audit/export?until=2026-01-01", "until"),
    ],
)
def test_timestamps_without_a_zone_are_422(client: TestClient, url: str, field: str) -> None:
    """A naive timestamp is refused, not guessed (the store compares in UTC): it was a
    500 (a naive value against a UTC column)."""
    r = client.get(url)
    assert r.status_code == 422 and field in r.json()["detail"], r.text
    assert client.get(url.split("=")[0] + "=2026-01-01T00:00:00Z").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "since=9999-12-31T23:59:00-01:00",  # no UTC equivalent: the store's conversion failed
        "until=0001-01-01T00:00:00%2B01:00",
        "before_id=99999999999999999999",  # past a store's integer
    ],
)
def test_audit_queries_out_of_range_are_422(client: TestClient, query: str) -> None:
    r = client.get(f"/api/audit?{query}")
    assert r.status_code == 422 and query.split("=")[0] in r.json()["detail"], r.text


def test_a_key_expiry_without_a_zone_is_422(client: TestClient) -> None:
    r = client.post("/api/keys", json={"name": "k", "expires_at": "2099-01-01T00:00:00"})
    assert r.status_code == 422 and "expires_at" in r.json()["detail"], r.text  # was a 500
    r = client.post("/api/keys", json={"name": "k", "expires_at": "2099-01-01T00:00:00+02:00"})
    assert r.status_code == 201, r.text


def test_deep_options_are_refused_before_they_are_stored(client: TestClient) -> None:
    """Options 300 levels deep were stored; every later listing of providers was a 500."""
    options = b'{"a":' * 300 + b"1" + b"}" * 300
    body = (
        b'{"name": "deep", "kind": "openai", "base_url": "https://api.example.com/v1", "options": '
    )
    r = client.post(
        "/api/gateway/providers",
        content=body + options + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "options" in r.json()["detail"], r.text
    assert client.get("/api/gateway/providers").status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/api/keys", {"name": "a\x00b"}),
        ("POST", "/api/workspaces", {"slug": "x", "name": "\x00"}),
        (
            "PUT",
            "/api/gateway/routes/r",
            {"name": "r", "deployments": [{"provider": "p", "model": "m\x00"}]},
        ),
        ("GET", "/api/audit?actor=a%00b", None),
        ("DELETE", "/api/keys/a%00b", None),
    ],
)
def test_a_nul_is_refused_before_the_store(
    client: TestClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    """PostgreSQL text cannot hold a NUL: each of these was a 500 there."""
    r = client.request(method, url, json=body)
    assert r.status_code in (400, 422), r.text
    assert "NUL" in r.json()["detail"]


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (
            "/api/datasets",
            b'{"name": "big", "items": [{"inputs": {"n": 99999999999999999999999}}]}',
            "items.0.inputs",
        ),
        (
            "/api/knowledge-bases",
            b'{"name": "big", "chunking": {"size": 99999999999999999999999}}',
            "chunking.size",
        ),
    ],
)
def test_integers_past_64_bits_are_refused(
    client: TestClient, url: str, body: bytes, field: str
) -> None:
    """An integer orjson cannot write was a 500 (a dataset item's size is measured with
    orjson): Schemathesis' stateful run found it."""
    r = client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and field in r.json()["detail"], r.text
