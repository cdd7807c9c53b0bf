"""The official openai SDK, sync and async, against the gateway and a fake upstream."""

from __future__ import annotations

import json

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.gateway.conftest import Env


@pytest.fixture
def client(env: Env) -> OpenAI:
    env.provider()
    env.route("gpt-4o-mini")
    env.route("embed", {"provider": "fake", "model": "text-embedding-3-small"}, kind="embedding")
    key, _ = env.key()
    return OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)


def test_chat(client: OpenAI, env: Env) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        temperature=0.2,
        seed=7,
        user="end-user-1",
        max_completion_tokens=50,
        stop=["\n\n"],
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: hello"
    assert reply.usage and reply.usage.total_tokens == 15
    assert raw.headers["x-shipyard-route"] == "gpt-4o-mini"
    assert raw.headers["x-shipyard-cache"] == "bypass"
    assert raw.headers["x-request-id"].startswith("req_")
    assert len(raw.headers["x-shipyard-trace-id"]) == 32
    # gpt-4o-mini costs 0.15 / 0.60 USD per 1M tokens: 10 in, 5 out
    assert float(raw.headers["x-shipyard-cost-usd"]) == pytest.approx((10 * 0.15 + 5 * 0.60) / 1e6)
    sent = env.upstream.requests[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["seed"] == 7 and sent["user"] == "end-user-1"
    assert env.upstream.headers[-1]["Authorization"] == "Bearer sk-upstream-secret"


def test_streaming_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_streaming_without_usage_hides_the_usage_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)


def test_tools_and_json_mode(client: OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather?"}],
        tools=tools,
        tool_choice="required",
    )
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {
        "city": "Paris"
    }
    assert reply.choices[0].finish_reason == "tool_calls"

    for fmt in (
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
    ):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "json"}], response_format=fmt
        )
        assert json.loads(reply.choices[0].message.content) == {"answer": 42}


def test_completions_embeddings_and_models(client: OpenAI) -> None:
    done = client.completions.create(model="gpt-4o-mini", prompt="and")
    assert done.choices[0].text == " and so on"
    emb = client.embeddings.create(model="embed", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 8
    names = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "embed"} <= names
    assert client.models.retrieve("embed").id == "embed"


def test_errors_have_openai_shape(client: OpenAI, env: Env) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as forbidden:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"api_base": "http://169.254.169.254"},
        )
    assert forbidden.value.code == "forbidden_parameter"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    wrong = OpenAI(base_url=env.url + "/v1", api_key="sy-000000000000-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    embed_as_chat = pytest.raises(openai.NotFoundError)
    with embed_as_chat:
        client.chat.completions.create(model="embed", messages=[{"role": "user", "content": "x"}])


async def test_async_client(client: OpenAI, env: Env) -> None:
    aclient = AsyncOpenAI(base_url=env.url + "/v1", api_key=client.api_key, max_retries=0)
    reply = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "async"}]
    )
    assert reply.choices[0].message.content == "echo: async"
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "echo: a b"
    emb = await aclient.embeddings.create(model="embed", input="x")
    assert emb.data[0].embedding[0] == pytest.approx(0.1)
    await aclient.close()


def test_viewer_keys_cannot_call_the_gateway(env: Env) -> None:
    key, _ = env.key("reader", role="viewer")
    viewer = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        viewer.models.list()


def test_records_are_written(client: OpenAI, env: Env) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "r"}], user="ann"
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    records = env.records(route="gpt-4o-mini")
    rec = records[0]
    assert rec["status"] == 200 and rec["prompt_tokens"] == 10 and rec["completion_tokens"] == 5
    assert rec["end_user"] == "ann" and rec["provider"] == "fake" and rec["cost_usd"] > 0
    assert rec["latency_ms"] > 0
