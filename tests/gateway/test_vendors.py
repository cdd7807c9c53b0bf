"""Translation both ways: Anthropic clients in front of any route, and the Anthropic and
Gemini providers behind the OpenAI shape."""

from __future__ import annotations

import json

import anthropic
import pytest
from openai import OpenAI

from tests.gateway.conftest import Env

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def key(env: Env) -> str:
    return env.key()[0]


def test_anthropic_sdk_in_front_of_an_openai_route(env: Env, key: str) -> None:
    env.provider()
    env.route("gpt-4o-mini")
    claude = anthropic.Anthropic(base_url=env.url, api_key=key, max_retries=0)
    msg = claude.messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello"}],
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
    )
    assert msg.content[0].text == "echo: hello" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 10 and msg.usage.output_tokens == 5
    sent = env.upstream.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["END"] and sent["user"] == "u-1" and sent["max_tokens"] == 64

    tool = claude.messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        tool_choice={"type": "any"},
        tools=[
            {
                "name": "weather",
                "description": "w",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        messages=[{"role": "user", "content": "weather?"}],
    )
    block = tool.content[0]
    assert block.type == "tool_use" and block.name == "weather" and block.input == {"city": "Paris"}
    assert tool.stop_reason == "tool_use"

    follow = claude.messages.create(
        model="gpt-4o-mini",
        max_tokens=32,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}],
            },
        ],
    )
    assert follow.content
    sent = env.upstream.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "weather"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}

    with claude.messages.stream(
        model="gpt-4o-mini", max_tokens=32, messages=[{"role": "user", "content": "a b c"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: a b c" and final.usage.output_tokens == 4  # one per word upstream

    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(
            model="ghost", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[])
    bad = anthropic.Anthropic(base_url=env.url, api_key="sy-000000000000-x", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(
            model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


def test_anthropic_provider(env: Env, key: str) -> None:
    env.provider("claude", kind="anthropic", base=env.upstream.root)
    env.route("claude-sonnet", {"provider": "claude", "model": "claude-sonnet-4-0"})
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        max_tokens=20,
    )
    assert reply.choices[0].message.content == "Bonjour from Claude"
    assert reply.usage.prompt_tokens == 12 and reply.usage.completion_tokens == 4
    sent, headers = env.upstream.requests[-1], env.upstream.headers[-1]
    assert sent["system"] == "sys" and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]
    assert headers["x-api-key"] == "sk-upstream-secret" and headers["anthropic-version"]

    tool = client.chat.completions.create(
        model="claude-sonnet",
        tools=TOOLS_OPENAI,
        tool_choice="required",
        messages=[{"role": "user", "content": "weather?"}],
    )
    call = tool.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {
        "city": "Paris"
    }
    assert tool.choices[0].finish_reason == "tool_calls"

    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "BonjourfromClaude"  # the fake splits on spaces and sends words
    assert chunks[-1].usage.completion_tokens == 4
    # Claude's price applies: 12 in, 4 out at 3 / 15 USD per 1M
    assert env.records(route="claude-sonnet")[0]["cost_usd"] == pytest.approx(
        (12 * 3 + 4 * 15) / 1e6
    )


def test_gemini_provider(env: Env, key: str) -> None:
    env.provider("google", kind="gemini", base=env.upstream.root)
    env.route("gemini", {"provider": "google", "model": "gemini-2.0-flash"})
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="gemini",
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        max_tokens=20,
        temperature=0.1,
        response_format={"type": "json_object"},
    )
    assert reply.choices[0].message.content == "Hallo from Gemini"
    assert reply.usage.prompt_tokens == 9
    sent, headers = env.upstream.requests[-1], env.upstream.headers[-1]
    assert sent["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert sent["generationConfig"] == {
        "temperature": 0.1,
        "maxOutputTokens": 20,
        "responseMimeType": "application/json",
    }
    assert headers["x-goog-api-key"] == "sk-upstream-secret"

    tool = client.chat.completions.create(
        model="gemini",
        tools=TOOLS_OPENAI,
        tool_choice="required",
        messages=[{"role": "user", "content": "weather?"}],
    )
    call = tool.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {
        "city": "Paris"
    }

    chunks = list(
        client.chat.completions.create(
            model="gemini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hallo from Gemini"
    )
    assert chunks[-1].usage.total_tokens == 12
