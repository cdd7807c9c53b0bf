"""Property-based fuzzing of `/v1`: bodies generated from the OpenAPI document the app
serves (strategies.py), sent as they are and mutated (wrong JSON types at every
level, missing fields, huge and empty values, deep nesting, control characters, NUL,
bytes that are not UTF-8), against the real app in process, whose routes call the
scripted fake upstream on loopback (OpenAI, Anthropic and Gemini wire formats).

The property: every answer is a 2xx, or a 4xx with the API's error shape whose `param`
or message names the field at fault. Never a 5xx: not even a 502, since the fake
upstream accepts whatever a provider sends, so a 502 means Shipyard sent something
broken (or crashed converting it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import CHAT_ROUTES, EMBEDDING_ROUTES, World
from tests.fuzz.strategies import from_schema

Path = tuple[str | int, ...]
ENDPOINTS = {
    "/v1/chat/completions": ("CreateChatCompletionRequest", CHAT_ROUTES),
    "/v1/completions": ("CreateCompletionRequest", ("fuzz-openai",)),
    "/v1/embeddings": ("CreateEmbeddingRequest", EMBEDDING_ROUTES),
    "/v1/messages": ("CreateMessageRequest", CHAT_ROUTES),
}
SENTINEL = "\x01shipyard-splice\x01"  # replaced in the serialized body


# the schema ---------------------------------------------------------------------------


def _inline(node: Any, schemas: dict[str, Any]) -> Any:
    """The schema with every local `$ref` replaced by its target (none are recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _inline(schemas[ref.rsplit("/", 1)[-1]], schemas)
        return {k: _inline(v, schemas) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, schemas) for v in node]
    return node


@pytest.fixture(scope="module")
def document(world: World) -> dict[str, Any]:
    r = world.client.get("/openapi.json")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def request_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """The published request schema of `path`, with `model` narrowed to the routes the
    fixture configured (any other name is a 404, which tells nothing)."""
    name, routes = ENDPOINTS[path]
    operation = doc["paths"][path]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/" + name)
    schema: dict[str, Any] = _inline(
        doc["components"]["schemas"][name], doc["components"]["schemas"]
    )
    schema["properties"]["model"] = {"enum": list(routes)}
    if path == "/v1/messages":  # Anthropic's shape: a shorter cap keeps examples small
        schema["properties"]["max_tokens"] = {"type": "integer", "minimum": 1, "maximum": 64}
    return schema


def _short_strings(node: Any, size: int) -> Any:
    if isinstance(node, dict):
        out = {k: _short_strings(v, size) for k, v in node.items()}
        if out.get("type") == "string" and "enum" not in out:
            out["maxLength"] = min(out.get("maxLength", size), size)
        return out
    if isinstance(node, list):
        return [_short_strings(v, size) for v in node]
    return node


def coherent(body: Any) -> Any:
    """A generated body with what JSON Schema cannot say made true: a named tool choice
    names one of the tools (else the body is refused before any mutation matters)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") not in ("function", "tool"):
        return body
    tools = body.get("tools") or []
    names = [t["function"]["name"] if "function" in t else t["name"] for t in tools]
    if not names:
        return {k: v for k, v in body.items() if k != "tool_choice"}
    if "function" in choice:
        return {**body, "tool_choice": {**choice, "function": {"name": names[0]}}}
    return {**body, "tool_choice": {**choice, "name": names[0]}}


_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {}


def bodies(doc: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    if path not in _STRATEGIES:
        _STRATEGIES[path] = from_schema(request_schema(doc, path))
    return _STRATEGIES[path]


# the property -------------------------------------------------------------------------


def _names(text: str, field: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(field)}(?![A-Za-z0-9_])", text) is not None


def check(r: Any, path: str, field: str | None) -> None:
    """2xx, or a 4xx in the API's error shape naming `field` (a top-level field of the
    body; None: the body as a whole)."""
    sent = r.request.content[:1500]
    assert r.status_code < 500, f"{r.status_code} for {field!r}: {r.text[:2000]}\nsent: {sent!r}"
    if r.status_code < 300:
        _check_stream(r)
        return
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    if path == "/v1/messages":
        assert body["type"] == "error" and isinstance(body["error"]["type"], str), body
        message, param = body["error"]["message"], None
    else:
        error = body["error"]
        assert isinstance(error["type"], str) and error["type"] != "api_error", body
        message, param = error["message"], error["param"]
        assert param is None or isinstance(param, str), body
    assert isinstance(message, str) and message, body
    if field is None:  # the body as a whole, or whichever field it names
        quoted = re.search(r"'[A-Za-z_][\w.\[\]]*'", message)
        assert _names(message, "body") or param is not None or quoted, body
        return
    top = re.split(r"[.\[]", param, maxsplit=1)[0] if param else None
    assert top == field or _names(message, field), f"{field!r} not named: {body}"


def _check_stream(r: Any) -> None:
    """A stream that started must not end in a server-side error event."""
    if not r.headers.get("content-type", "").startswith("text/event-stream"):
        return
    for line in r.text.split("\n"):  # SSE lines; str.splitlines also cuts at U+2028
        if line.startswith("data: {"):
            event = orjson.loads(line[6:])
            error = event.get("error") if isinstance(event, dict) else None
            assert error is None or error.get("type") not in ("api_error", "upstream_error"), (
                r.text[:2000]
            )


# mutations ----------------------------------------------------------------------------


def paths(node: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every place in a body a value sits (the body itself excluded)."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        here = (*prefix, key)
        yield here
        yield from paths(value, here)


def replace(body: Any, where: Path, value: Any) -> Any:
    """A copy of `body` with the value at `where` replaced (or removed: `...`)."""
    if not where:
        return value
    head, rest = where[0], where[1:]
    if isinstance(body, dict):
        out = dict(body)
        if not rest and value is ...:
            del out[head]  # type: ignore[arg-type]  # dict keys are strings
        else:
            out[head] = replace(body[head], rest, value)  # type: ignore[index]  # a key
        return out
    out_list = list(body)
    if not rest and value is ...:
        del out_list[head]  # type: ignore[arg-type]  # list indices are ints
    else:
        out_list[head] = replace(body[head], rest, value)  # type: ignore[index]  # an index
    return out_list


def deep(levels: int) -> bytes:
    return (
        b'{"a":' * (levels // 2)
        + b"[" * (levels - levels // 2)
        + b"]" * (levels - levels // 2)
        + b"}" * (levels // 2)
    )


WRONG = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        7,
        2**64 - 1,
        -(2**63),
        1.5,
        -1e300,
        "",
        "x",
        [],
        [None],
        {},
        {"a": 1},
    ]
)
STRANGE_TEXT = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "\x1b[31mred\x1b[0m",
        "\r\n\t\x0b\x0c",
        "\u2028\u2029",
        "\ufeff",
        "\U0001f600" * 50,
        "\x7f\x80\x9f",
        "x" * 300_000,
    ]
)
# spliced into the serialized body as raw bytes, in place of the sentinel string
RAW = st.sampled_from(
    [
        deep(70),  # over Shipyard's limit, under what orjson can write
        deep(300),  # parses, but orjson cannot write it back (its limit is 255)
        deep(10_000),  # more than orjson parses
        b'"\xff\xfe"',  # not UTF-8
        b'"\xed\xa0\x80"',  # an encoded surrogate
        b'"\\ud800"',  # a lone surrogate escape
        b"1e400",  # a number beyond a double
        b"123456789012345678901234567890",
        b"[" + b"0," * 100_000 + b"0]",
    ]
)


@st.composite
def mutation(draw: st.DrawFn, body: Any) -> tuple[bytes, str]:
    """A mutated body (serialized) and the top-level field it touches."""
    where = draw(st.sampled_from(list(paths(body))))
    kind = draw(st.sampled_from(["wrong", "delete", "empty", "text", "raw"]))
    if kind == "delete":
        changed = replace(body, where, ...)
    elif kind == "wrong":
        changed = replace(body, where, draw(WRONG))
    elif kind == "empty":
        changed = replace(body, where, draw(st.sampled_from(["", [], {}])))
    elif kind == "text":
        changed = replace(body, where, draw(STRANGE_TEXT))
    else:
        changed = replace(body, where, SENTINEL)
    raw = orjson.dumps(changed)
    if kind == "raw":
        raw = raw.replace(orjson.dumps(SENTINEL), draw(RAW))
    return raw, str(where[0])


# the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_bodies_from_the_schema_are_answered(
    world: World, document: dict[str, Any], path: str
) -> None:
    """A body the schema allows is served, or refused naming one of its fields (a
    tool_choice naming no tool, say: OpenAI refuses it too)."""

    @given(body=bodies(document, path))
    def run(body: Any) -> None:
        r = world.v1(path, orjson.dumps(coherent(body)))
        named = [f for f in body if _refusal_names(r, path, f)]
        check(r, path, named[0] if named else next(iter(body)))

    run()


def _refusal_names(r: Any, path: str, field: str) -> bool:
    if not 400 <= r.status_code < 500:
        return False
    try:
        check(r, path, field)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_mutated_bodies_get_a_4xx_naming_the_field(
    world: World, document: dict[str, Any], path: str
) -> None:
    @settings(max_examples=settings().max_examples * 4)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        body = coherent(data.draw(bodies(document, path), label="body"))
        raw, field = data.draw(mutation(body), label="mutation")
        check(world.v1(path, raw), path, field)

    run()


@pytest.mark.parametrize("path", list(ENDPOINTS))
@given(raw=RAW | st.sampled_from([b"", b"{", b"[]", b'"x"', b"null", b"1", b"{}"]))
def test_bodies_that_are_not_objects_get_a_4xx(world: World, path: str, raw: bytes) -> None:
    check(world.v1(path, raw), path, None)


@pytest.mark.local_model
def test_the_local_model_takes_bodies_from_the_schema(
    world: World, document: dict[str, Any]
) -> None:
    """The built-in SmolLM2 (llama.cpp) behind the same checks: a few small generated
    bodies, a few tokens each, then mutated ones (most refused before the model)."""
    path = "/v1/chat/completions"
    schema = request_schema(document, path)
    props = schema["properties"]
    props["model"] = {"enum": ["smollm2"]}
    props["max_tokens"] = {"type": "integer", "minimum": 1, "maximum": 3}
    props["messages"]["maxItems"] = 2
    props["tools"]["maxItems"] = 1
    for name in ("max_completion_tokens", "n", "stream"):
        props.pop(name)
    schema["required"].append("max_tokens")
    strategy = from_schema(_short_strings(schema, 12))  # short prompts: fast to read

    @settings(max_examples=4, phases=[Phase.explicit, Phase.generate])  # no slow shrinking
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        body = coherent(data.draw(strategy, label="body"))
        check(world.v1(path, orjson.dumps(body)), path, None)
        raw, field = data.draw(mutation(body), label="mutation")
        check(world.v1(path, raw), path, field)

    run()
