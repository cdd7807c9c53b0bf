"""Checking request bodies on the hot path: plain checks that name the offending
parameter, no model validation of whole payloads. What they accept is published as
OpenAPI in `openapi.py` (a test generates bodies from there and sends them here).

Parsing is here too (`parse`): a body that is not JSON, or nests deeper than
`MAX_DEPTH` (which JSON writers refuse to write back: orjson stops at 255 levels), is
refused with the place it goes wrong."""

from __future__ import annotations

import re
from typing import Any

import orjson

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
MAX_PROMPTS = 128  # a completions prompt list: one completion (times n) per entry
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TEXT_ROLES = ROLES - {"tool"}  # the roles a message of only a role and a text may have
MAX_DEPTH = 64  # nesting levels of a request body, the body itself being the first


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
    _flag(body, "stream")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidInput("'stop' must be a string or a list of up to 4 strings", param="stop")
    _user(body)
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise InvalidInput("'stream_options' must be an object", param="stream_options")
    if so is not None:
        _flag(so, "include_usage", "stream_options.")
    bias = body.get("logit_bias")
    if bias is not None and not (
        isinstance(bias, dict)
        and all(
            k.isascii() and k.isdigit() and _is_number(v) and -100 <= v <= 100
            for k, v in bias.items()
        )
    ):
        raise InvalidInput(
            "'logit_bias' must map token ids to numbers from -100 to 100", param="logit_bias"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flag(body: dict[str, Any], name: str, prefix: str = "") -> None:
    """An optional boolean (null counts as absent, as in OpenAI's API)."""
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"'{prefix}{name}' must be true or false", param=prefix + name)


def _string(obj: dict[str, Any], name: str, where: str, *, required: bool = False) -> None:
    value = obj.get(name)
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{where}.{name} must be a string", param=f"{where}.{name}")


def _user(body: dict[str, Any]) -> None:
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 200 or "\x00" in user):
        raise InvalidInput(
            "'user' must be a string of at most 200 characters, without NUL", param="user"
        )


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
        if not (  # the common message, a role and a text, checked inline (the hot path)
            type(m) is dict
            and len(m) == 2
            and type(m.get("content")) is str
            and type(m.get("role")) is str
            and m["role"] in _TEXT_ROLES
        ):
            _message(m, f"messages[{i}]")
    _common(body)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidInput(
            "'tools' must be a list of {type: function, function: {name}}", param="tools"
        )
    for i, tool in enumerate(tools or ()):
        _tool(tool, f"tools[{i}]")
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
    if isinstance(choice, dict):
        named = choice["function"]["name"]
        if named not in {t["function"]["name"] for t in tools or ()}:
            raise InvalidInput(
                f"'tool_choice' names the function '{named[:100]}', which is not in 'tools'",
                param="tool_choice.function.name",
            )
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise InvalidInput(
                "'response_format.type' must be text, json_object or json_schema",
                param="response_format",
            )
        if rf["type"] == "json_schema":
            spec = rf.get("json_schema")
            if not isinstance(spec, dict):
                raise InvalidInput(
                    "'response_format.json_schema' must be an object",
                    param="response_format.json_schema",
                )
            _string(spec, "name", "response_format.json_schema")
            _string(spec, "description", "response_format.json_schema")
            _object(spec, "schema", "response_format.json_schema")
            _flag(spec, "strict", "response_format.json_schema.")
    _flag(body, "parallel_tool_calls")
    _flag(body, "logprobs")
    _number(body, "top_logprobs", 0, 20, integer=True)
    return model


_PARTS = {  # content part type -> (its field, the field's kind)
    "text": ("text", str),
    "refusal": ("refusal", str),
    "image_url": ("image_url", dict),
    "input_audio": ("input_audio", dict),
    "file": ("file", dict),
}


def _message(m: Any, where: str) -> None:
    role = m.get("role") if isinstance(m, dict) else None
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidInput(
            f"{where} must be an object with a role of system, developer, user, assistant or tool",
            param=f"{where}.role",
        )
    content = m.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            _part(part, f"{where}.content[{j}]")
    elif content is None:
        if role not in ("assistant", "function"):  # they may carry only tool calls
            raise InvalidInput(
                f"{where}.content is required for the {role} role", param=f"{where}.content"
            )
    elif not isinstance(content, str):
        raise InvalidInput(
            f"{where}.content must be a string or a list of parts", param=f"{where}.content"
        )
    _string(m, "name", where)
    _string(m, "refusal", where)
    _string(m, "tool_call_id", where, required=role == "tool")
    calls = m.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise InvalidInput(
            f"{where}.tool_calls must be a list of function calls", param=f"{where}.tool_calls"
        )
    for k, call in enumerate(calls or ()):
        here = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise InvalidInput(f"{here} must be a function call", param=here)
        _string(call, "id", here)
        _string(call, "type", here)
        _string(call["function"], "name", f"{here}.function", required=True)
        _string(call["function"], "arguments", f"{here}.function", required=True)
    fc = m.get("function_call")
    if fc is not None:
        if not isinstance(fc, dict):
            raise InvalidInput(
                f"{where}.function_call must be an object", param=f"{where}.function_call"
            )
        _string(fc, "name", f"{where}.function_call", required=True)
        _string(fc, "arguments", f"{where}.function_call", required=True)


def _part(part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str):
        raise InvalidInput(f"{where} must be an object with a type", param=f"{where}.type")
    field, expected = _PARTS.get(kind, (None, None))
    if field is None or expected is None:  # another type: passed through, for providers
        _string(part, "text", where)  # (token counts and caches read any part's text)
        return
    if not isinstance(part.get(field), expected):
        what = "a string" if expected is str else "an object"
        raise InvalidInput(f"{where}.{field} must be {what}", param=f"{where}.{field}")
    if kind == "image_url":
        _string(part[field], "url", f"{where}.image_url", required=True)
        _string(part[field], "detail", f"{where}.image_url")
    elif kind == "input_audio":
        _string(part[field], "data", f"{where}.input_audio", required=True)
        _string(part[field], "format", f"{where}.input_audio", required=True)
    elif kind == "file":
        for name in ("file_data", "file_id", "filename"):
            _string(part[field], name, f"{where}.file")


def _tool(tool: Any, where: str) -> None:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict):
        raise InvalidInput(
            f"{where} must be {{type: function, function: {{name}}}}", param=f"{where}.function"
        )
    _string(tool, "type", where)
    _string(fn, "name", f"{where}.function", required=True)
    _string(fn, "description", f"{where}.function")
    _object(fn, "parameters", f"{where}.function")
    _flag(fn, "strict", f"{where}.function.")


def _object(obj: dict[str, Any], name: str, where: str) -> None:
    value = obj.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"{where}.{name} must be an object", param=f"{where}.{name}")


def completion(body: Any) -> str:
    model = _request(body)
    prompt = body.get("prompt")
    if not (
        isinstance(prompt, str)
        or (
            isinstance(prompt, list)
            and 0 < len(prompt) <= MAX_PROMPTS
            and all(isinstance(p, str) for p in prompt)
        )
    ):
        raise InvalidInput(
            f"'prompt' must be a string or a list of 1 to {MAX_PROMPTS} strings", param="prompt"
        )
    _common(body)
    _number(body, "best_of", 1, 16, integer=True)
    _flag(body, "echo")
    _number(body, "logprobs", 0, 5, integer=True)
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise InvalidInput("'suffix' must be a string", param="suffix")
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
    _number(body, "dimensions", 1, 100_000, integer=True)
    _user(body)
    return model


# parsing -------------------------------------------------------------------------------

_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')
_SCAN_TOKENS = 20_000  # locating an error reads at most this many tokens (bounded work)


def parse(raw: bytes) -> Any:
    """The request body, parsed; refused (naming where) when it is not JSON or nests
    deeper than `MAX_DEPTH`. The depth walk runs only when the body has more brackets
    than the limit (a count at C speed), so ordinary bodies pay nothing for it."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _not_json(raw, exc) from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        where = _too_deep(body, ())
        if where is not None:
            raise _deep(_dotted(where))
    return body


def _too_deep(value: Any, where: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The path to the first container past `MAX_DEPTH`, or None."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    if len(where) >= MAX_DEPTH:
        return where
    for key, child in items:
        if isinstance(child, (dict, list)):
            found = _too_deep(child, (*where, key))
            if found is not None:
                return found
    return None


def _deep(where: str | None) -> InvalidInput:
    at = f"'{where}'" if where else "the request body"
    return InvalidInput(
        f"{at} nests deeper than {MAX_DEPTH} levels", param=where, code="nesting_too_deep"
    )


def _not_json(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidInput:
    reason, pos = exc.msg, exc.pos
    try:
        text = raw.decode()
    except UnicodeDecodeError as bad:  # orjson checks the encoding before parsing
        text = raw[: bad.start].decode()
        reason, pos = "it is not UTF-8", len(text)
    where = _dotted(_locate(text, pos))
    if "depth" in reason:
        return _deep(where)
    at = f" at '{where}'" if where else ""
    return InvalidInput(
        f"the request body is not valid JSON{at}: {reason}", param=where, code="invalid_json"
    )


def _locate(text: str, pos: int) -> tuple[str | int, ...]:
    """The path (keys and indices) at character `pos` of a JSON text, read by its tokens
    up to there (at most `_SCAN_TOKENS`; an empty path beyond)."""
    stack: list[list[Any]] = []  # [kind, key or index, expecting a key]
    for count, token in enumerate(_TOKENS.finditer(text, 0, pos)):
        if count > _SCAN_TOKENS:
            return ()
        t = token.group()
        if t == "{":
            stack.append(["{", None, True])
        elif t == "[":
            stack.append(["[", 0, False])
        elif t in "]}":
            if stack:
                stack.pop()
        elif t == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
            elif stack:
                stack[-1][1:] = [None, True]
        elif t == ":":
            if stack:
                stack[-1][2] = False
        elif stack and stack[-1][0] == "{" and stack[-1][2]:
            stack[-1][1] = t[1:-1]
    return tuple(s[1] for s in stack if s[1] is not None)


def _dotted(path: tuple[str | int, ...]) -> str | None:
    """`messages[0].content[1].text`; the first eight steps of a longer path."""
    out = ""
    for step in path[:8]:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or None
