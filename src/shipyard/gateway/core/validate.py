"""Checking request bodies on the hot path: plain checks that name the offending
parameter, no model validation of whole payloads."""

from __future__ import annotations

from typing import Any

from shipyard.errors import InvalidInput

# Clients must never steer where Shipyard connects or with which credentials.
FORBIDDEN = (
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "custom_llm_provider",
    "organization",
    "extra_headers",
    "headers",
    "model_list",
    "fallbacks",
    "azure_ad_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "vertex_credentials",
    "vertex_project",
    "vertex_location",
    "api_type",
    "mock_response",
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


_FORBIDDEN = frozenset(FORBIDDEN)


def _forbid(body: dict[str, Any]) -> None:
    found = _FORBIDDEN.intersection(body)
    if found:
        name = next(n for n in FORBIDDEN if n in found)  # the first, in a stable order
        raise InvalidInput(
            f"'{name}' cannot be set by clients", param=name, code="forbidden_parameter"
        )


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200:
        raise InvalidInput("'model' must be a non-empty string", param="model")
    return model


def _number(body: dict[str, Any], name: str, lo: float, hi: float, integer: bool = False) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"'{name}' must be {kind}", param=name)
    if not lo <= value <= hi:
        raise InvalidInput(f"'{name}' must be between {lo:g} and {hi:g}", param=name)


def _common(body: dict[str, Any]) -> None:
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "n", 1, 16, integer=True)
    _number(body, "max_tokens", 1, 1_000_000, integer=True)
    _number(body, "max_completion_tokens", 1, 1_000_000, integer=True)
    _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidInput("'stream' must be true or false", param="stream")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidInput("'stop' must be a string or a list of up to 4 strings", param="stop")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 200):
        raise InvalidInput("'user' must be a string of at most 200 characters", param="user")
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise InvalidInput("'stream_options' must be an object", param="stream_options")


def _request(body: Any) -> str:
    """Checks every request shares; returns the model name."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    _forbid(body)
    return _model(body)


def chat(body: Any) -> str:
    model = _request(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("'messages' must be a non-empty list", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InvalidInput(
                f"messages[{i}] must be an object with a role of "
                "system, developer, user, assistant or tool",
                param=f"messages[{i}].role",
            )
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidInput(
                f"messages[{i}].content must be a string or a list of parts",
                param=f"messages[{i}].content",
            )
        if isinstance(content, list) and not all(
            isinstance(p, dict) and isinstance(p.get("type"), str) for p in content
        ):
            raise InvalidInput(
                f"messages[{i}].content parts must be objects with a type",
                param=f"messages[{i}].content",
            )
        calls = m.get("tool_calls")
        if calls is not None and not (
            isinstance(calls, list)
            and all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in calls)
        ):
            raise InvalidInput(
                f"messages[{i}].tool_calls must be a list of function calls",
                param=f"messages[{i}].tool_calls",
            )
    _common(body)
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or not all(
            isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        )
    ):
        raise InvalidInput(
            "'tools' must be a list of {type: function, function: {name}}", param="tools"
        )
    choice = body.get("tool_choice")
    if choice is not None and not (
        choice in ("none", "auto", "required")
        or (
            isinstance(choice, dict)
            and isinstance(choice.get("function"), dict)
            and isinstance(choice["function"].get("name"), str)
        )
    ):
        raise InvalidInput(
            "'tool_choice' must be none, auto, required or {type: function, function: {name}}",
            param="tool_choice",
        )
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise InvalidInput(
                "'response_format.type' must be text, json_object or json_schema",
                param="response_format",
            )
        if rf["type"] == "json_schema" and not isinstance(rf.get("json_schema"), dict):
            raise InvalidInput(
                "'response_format.json_schema' must be an object",
                param="response_format.json_schema",
            )
    return model


def completion(body: Any) -> str:
    model = _request(body)
    prompt = body.get("prompt")
    if not (
        isinstance(prompt, str)
        or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt))
    ):
        raise InvalidInput("'prompt' must be a string or a list of strings", param="prompt")
    _common(body)
    return model


def embeddings(body: Any) -> str:
    model = _request(body)
    data = body.get("input")
    ok = isinstance(data, str) or (
        isinstance(data, list) and 0 < len(data) <= 2048 and all(isinstance(x, str) for x in data)
    )
    if not ok:
        raise InvalidInput("'input' must be a string or a list of 1 to 2048 strings", param="input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise InvalidInput("'encoding_format' must be float or base64", param="encoding_format")
    return model
