"""The `/v1` face as OpenAPI: request and response schemas close to OpenAI's own
specification (and Anthropic's for `/v1/messages`), published in `/openapi.json` so
that standard tools can generate clients and fuzz the gateway. The bodies are checked
by `validate.py` (plain checks, for speed), not by these schemas: a test keeps the two
in step by generating bodies from here and sending them to the gateway."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def _const(value: str) -> Schema:
    return {"type": "string", "enum": [value]}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}


def _number(lo: float, hi: float, integer: bool = False) -> Schema:
    return _nullable({"type": "integer" if integer else "number", "minimum": lo, "maximum": hi})


def _text_or(part: str) -> Schema:
    return {"anyOf": [STRING, {"type": "array", "items": _ref(part)}]}


# chat: messages and their content parts ---------------------------------------------

_PARTS: dict[str, Schema] = {
    "ChatCompletionRequestMessageContentPartText": _obj(
        ("type", "text"), type=_const("text"), text=STRING
    ),
    "ChatCompletionRequestMessageContentPartImage": _obj(
        ("type", "image_url"),
        type=_const("image_url"),
        image_url=_obj(
            ("url",),
            url={"type": "string", "description": "An http(s) URL or a data: URL."},
            detail={"type": "string", "enum": ["auto", "low", "high"]},
        ),
    ),
    "ChatCompletionRequestMessageContentPartAudio": _obj(
        ("type", "input_audio"),
        type=_const("input_audio"),
        input_audio=_obj(
            ("data", "format"),
            data={"type": "string", "description": "Base64-encoded audio."},
            format={"type": "string", "enum": ["wav", "mp3"]},
        ),
    ),
    "ChatCompletionRequestMessageContentPartFile": _obj(
        ("type", "file"),
        type=_const("file"),
        file=_obj(file_data=STRING, file_id=STRING, filename=STRING),
    ),
    "ChatCompletionRequestMessageContentPartRefusal": _obj(
        ("type", "refusal"), type=_const("refusal"), refusal=STRING
    ),
    "ChatCompletionRequestUserMessageContentPart": {
        "anyOf": [
            _ref("ChatCompletionRequestMessageContentPartText"),
            _ref("ChatCompletionRequestMessageContentPartImage"),
            _ref("ChatCompletionRequestMessageContentPartAudio"),
            _ref("ChatCompletionRequestMessageContentPartFile"),
        ]
    },
    "ChatCompletionRequestAssistantMessageContentPart": {
        "anyOf": [
            _ref("ChatCompletionRequestMessageContentPartText"),
            _ref("ChatCompletionRequestMessageContentPartRefusal"),
        ]
    },
}

_TEXT_PART = "ChatCompletionRequestMessageContentPartText"

_MESSAGES: dict[str, Schema] = {
    "ChatCompletionMessageToolCall": _obj(
        ("id", "type", "function"),
        id=STRING,
        type=_const("function"),
        function=_obj(
            ("name", "arguments"),
            name=STRING,
            arguments={"type": "string", "description": "The arguments, as a JSON text."},
        ),
    ),
    "ChatCompletionRequestSystemMessage": _obj(
        ("role", "content"), role=_const("system"), content=_text_or(_TEXT_PART), name=STRING
    ),
    "ChatCompletionRequestDeveloperMessage": _obj(
        ("role", "content"), role=_const("developer"), content=_text_or(_TEXT_PART), name=STRING
    ),
    "ChatCompletionRequestUserMessage": _obj(
        ("role", "content"),
        role=_const("user"),
        content=_text_or("ChatCompletionRequestUserMessageContentPart"),
        name=STRING,
    ),
    "ChatCompletionRequestAssistantMessage": _obj(
        ("role",),
        role=_const("assistant"),
        content=_nullable(_text_or("ChatCompletionRequestAssistantMessageContentPart")),
        refusal=_nullable(STRING),
        name=STRING,
        tool_calls={"type": "array", "items": _ref("ChatCompletionMessageToolCall")},
        function_call=_nullable(_obj(("name", "arguments"), name=STRING, arguments=STRING)),
    ),
    "ChatCompletionRequestToolMessage": _obj(
        ("role", "content", "tool_call_id"),
        role=_const("tool"),
        content=_text_or(_TEXT_PART),
        tool_call_id=STRING,
    ),
    "ChatCompletionRequestFunctionMessage": _obj(
        ("role", "content", "name"),
        role=_const("function"),
        content=_nullable(STRING),
        name=STRING,
    ),
    "ChatCompletionRequestMessage": {
        "anyOf": [
            _ref("ChatCompletionRequestSystemMessage"),
            _ref("ChatCompletionRequestDeveloperMessage"),
            _ref("ChatCompletionRequestUserMessage"),
            _ref("ChatCompletionRequestAssistantMessage"),
            _ref("ChatCompletionRequestToolMessage"),
            _ref("ChatCompletionRequestFunctionMessage"),
        ]
    },
}

# chat: the rest of the request -------------------------------------------------------

_FUNCTION_NAME: Schema = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}

_CHAT: dict[str, Schema] = {
    "FunctionObject": _obj(
        ("name",),
        name=_FUNCTION_NAME,
        description=STRING,
        parameters={
            "type": "object",
            "description": "The parameters, as a JSON Schema object.",
            "additionalProperties": True,
        },
        strict=_nullable(BOOLEAN),
    ),
    "ChatCompletionTool": _obj(
        ("type", "function"), type=_const("function"), function=_ref("FunctionObject")
    ),
    "ChatCompletionNamedToolChoice": _obj(
        ("type", "function"),
        type=_const("function"),
        function=_obj(("name",), name=STRING),
    ),
    "ChatCompletionToolChoiceOption": {
        "anyOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            _ref("ChatCompletionNamedToolChoice"),
        ]
    },
    "ResponseFormatText": _obj(("type",), type=_const("text")),
    "ResponseFormatJsonObject": _obj(("type",), type=_const("json_object")),
    "ResponseFormatJsonSchema": _obj(
        ("type", "json_schema"),
        type=_const("json_schema"),
        json_schema=_obj(
            ("name",),
            name=_FUNCTION_NAME,
            description=STRING,
            schema={"type": "object", "additionalProperties": True},
            strict=_nullable(BOOLEAN),
        ),
    ),
    "StopConfiguration": _nullable(
        {"anyOf": [STRING, {"type": "array", "items": STRING, "minItems": 1, "maxItems": 4}]}
    ),
    "ChatCompletionStreamOptions": _nullable(_obj(include_usage=BOOLEAN)),
    "LogitBias": _nullable(
        {
            "type": "object",
            "description": "Token ids (as strings) to a bias from -100 to 100.",
            "propertyNames": {"pattern": "^[0-9]{1,9}$"},
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
        }
    ),
}

_USER: Schema = {
    "type": "string",
    "maxLength": 200,
    "pattern": "^[^\\x00]*$",
    "description": "An identifier of the end user (no NUL characters).",
}


def _sampling() -> dict[str, Schema]:
    """Parameters chat and completions share, with the ranges `validate.py` enforces."""
    return {
        "temperature": _number(0, 2),
        "top_p": _number(0, 1),
        "n": _number(1, 16, integer=True),
        "max_tokens": _number(1, 1_000_000, integer=True),
        "presence_penalty": _number(-2, 2),
        "frequency_penalty": _number(-2, 2),
        "seed": _number(-(2**63), 2**63 - 1, integer=True),
        "stop": _ref("StopConfiguration"),
        "stream": _nullable(BOOLEAN),
        "stream_options": _ref("ChatCompletionStreamOptions"),
        "logit_bias": _ref("LogitBias"),
        "user": _USER,
    }


_MODEL: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "The name of a Shipyard route (see `GET /v1/models`).",
}

_REQUESTS: dict[str, Schema] = {
    "CreateChatCompletionRequest": _obj(
        ("model", "messages"),
        model=_MODEL,
        messages={"type": "array", "minItems": 1, "items": _ref("ChatCompletionRequestMessage")},
        **_sampling(),
        max_completion_tokens=_number(1, 1_000_000, integer=True),
        tools={"type": "array", "items": _ref("ChatCompletionTool")},
        tool_choice=_ref("ChatCompletionToolChoiceOption"),
        parallel_tool_calls=BOOLEAN,
        response_format={
            "anyOf": [
                _ref("ResponseFormatText"),
                _ref("ResponseFormatJsonObject"),
                _ref("ResponseFormatJsonSchema"),
            ]
        },
        logprobs=_nullable(BOOLEAN),
        top_logprobs=_number(0, 20, integer=True),
    ),
    "CreateCompletionRequest": _obj(
        ("model", "prompt"),
        model=_MODEL,
        prompt={
            "anyOf": [
                STRING,
                # one completion per entry: the list is capped (validate.MAX_PROMPTS)
                {"type": "array", "items": STRING, "minItems": 1, "maxItems": 128},
            ]
        },
        **_sampling(),
        echo=_nullable(BOOLEAN),
        suffix=_nullable(STRING),
        logprobs=_number(0, 5, integer=True),
    ),
    "CreateEmbeddingRequest": _obj(
        ("model", "input"),
        model=_MODEL,
        input={
            "anyOf": [
                STRING,
                {"type": "array", "items": STRING, "minItems": 1, "maxItems": 2048},
            ]
        },
        encoding_format={"type": "string", "enum": ["float", "base64"]},
        dimensions={"type": "integer", "minimum": 1, "maximum": 100_000},
        user=_USER,
    ),
}

# responses ---------------------------------------------------------------------------

_USAGE = _obj(
    ("prompt_tokens", "total_tokens"),
    prompt_tokens={"type": "integer"},
    completion_tokens={"type": "integer"},
    total_tokens={"type": "integer"},
)

_RESPONSES: dict[str, Schema] = {
    "CompletionUsage": _USAGE,
    "ChatCompletionResponseMessage": _obj(
        ("role",),
        role=_const("assistant"),
        content=_nullable(STRING),
        refusal=_nullable(STRING),
        tool_calls={"type": "array", "items": _ref("ChatCompletionMessageToolCall")},
    ),
    "CreateChatCompletionResponse": _obj(
        ("id", "object", "created", "model", "choices"),
        id=STRING,
        object=_const("chat.completion"),
        created={"type": "integer"},
        model=STRING,
        choices={
            "type": "array",
            "items": _obj(
                ("index", "message"),
                index={"type": "integer"},
                message=_ref("ChatCompletionResponseMessage"),
                finish_reason=_nullable(STRING),
            ),
        },
        usage=_ref("CompletionUsage"),
    ),
    "CreateCompletionResponse": _obj(
        ("id", "object", "model", "choices"),
        id=STRING,
        object=_const("text_completion"),
        created={"type": "integer"},
        model=STRING,
        choices={
            "type": "array",
            "items": _obj(
                ("index", "text"),
                index={"type": "integer"},
                text=STRING,
                finish_reason=_nullable(STRING),
            ),
        },
        usage=_ref("CompletionUsage"),
    ),
    "CreateEmbeddingResponse": _obj(
        ("object", "model", "data"),
        object=_const("list"),
        model=STRING,
        data={
            "type": "array",
            "items": _obj(
                ("index", "embedding"),
                object=_const("embedding"),
                index={"type": "integer"},
                embedding={
                    "anyOf": [{"type": "array", "items": {"type": "number"}}, STRING],
                },
            ),
        },
        usage=_ref("CompletionUsage"),
    ),
    "Model": _obj(
        ("id", "object", "created", "owned_by"),
        id=STRING,
        object=_const("model"),
        created={"type": "integer"},
        owned_by=STRING,
        kind={"type": "string", "enum": ["chat", "embedding"]},
        description=STRING,
    ),
    "ListModelsResponse": _obj(
        ("object", "data"), object=_const("list"), data={"type": "array", "items": _ref("Model")}
    ),
    "Error": _obj(
        ("message", "type"),
        message=STRING,
        type=STRING,
        param=_nullable(STRING),
        code=_nullable(STRING),
    ),
    "ErrorResponse": _obj(("error",), error=_ref("Error")),
}

# Anthropic Messages ------------------------------------------------------------------

_ANTHROPIC: dict[str, Schema] = {
    "AnthropicTextBlock": _obj(("type", "text"), type=_const("text"), text=STRING),
    "AnthropicImageBlock": _obj(
        ("type", "source"),
        type=_const("image"),
        source={
            "anyOf": [
                _obj(
                    ("type", "media_type", "data"),
                    type=_const("base64"),
                    media_type={
                        "type": "string",
                        "enum": ["image/jpeg", "image/png", "image/gif", "image/webp"],
                    },
                    data=STRING,
                ),
                _obj(("type", "url"), type=_const("url"), url=STRING),
            ]
        },
    ),
    "AnthropicToolUseBlock": _obj(
        ("type", "id", "name", "input"),
        type=_const("tool_use"),
        id=STRING,
        name=STRING,
        input={"type": "object", "additionalProperties": True},
    ),
    "AnthropicToolResultBlock": _obj(
        ("type", "tool_use_id"),
        type=_const("tool_result"),
        tool_use_id=STRING,
        content={
            "anyOf": [STRING, {"type": "array", "items": _ref("AnthropicTextBlock")}],
        },
        is_error=BOOLEAN,
    ),
    "AnthropicUserMessage": _obj(
        ("role", "content"),
        role=_const("user"),
        content={
            "anyOf": [
                STRING,
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "anyOf": [
                            _ref("AnthropicTextBlock"),
                            _ref("AnthropicImageBlock"),
                            _ref("AnthropicToolResultBlock"),
                        ]
                    },
                },
            ]
        },
    ),
    "AnthropicAssistantMessage": _obj(
        ("role", "content"),
        role=_const("assistant"),
        content={
            "anyOf": [
                STRING,
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"anyOf": [_ref("AnthropicTextBlock"), _ref("AnthropicToolUseBlock")]},
                },
            ]
        },
    ),
    "AnthropicMessageParam": {
        "anyOf": [_ref("AnthropicUserMessage"), _ref("AnthropicAssistantMessage")]
    },
    "AnthropicTool": _obj(
        ("name", "input_schema"),
        name=_FUNCTION_NAME,
        description=STRING,
        input_schema={"type": "object", "additionalProperties": True},
    ),
    "AnthropicToolChoice": {
        "anyOf": [
            _obj(("type",), type={"type": "string", "enum": ["auto", "any", "none"]}),
            _obj(("type", "name"), type=_const("tool"), name=STRING),
        ]
    },
    "CreateMessageRequest": _obj(
        ("model", "max_tokens", "messages"),
        model=_MODEL,
        max_tokens={"type": "integer", "minimum": 1, "maximum": 1_000_000},
        messages={"type": "array", "minItems": 1, "items": _ref("AnthropicMessageParam")},
        system={"anyOf": [STRING, {"type": "array", "items": _ref("AnthropicTextBlock")}]},
        temperature={"type": "number", "minimum": 0, "maximum": 1},
        top_p={"type": "number", "minimum": 0, "maximum": 1},
        stop_sequences={"type": "array", "items": STRING, "maxItems": 4},
        stream=BOOLEAN,
        metadata=_obj(user_id=_nullable(_USER)),
        tools={"type": "array", "items": _ref("AnthropicTool")},
        tool_choice=_ref("AnthropicToolChoice"),
    ),
    "AnthropicMessage": _obj(
        ("id", "type", "role", "content", "model"),
        id=STRING,
        type=_const("message"),
        role=_const("assistant"),
        content={"type": "array", "items": {"type": "object"}},
        model=STRING,
        stop_reason=_nullable(STRING),
        stop_sequence=_nullable(STRING),
        usage=_obj(input_tokens={"type": "integer"}, output_tokens={"type": "integer"}),
    ),
    "AnthropicErrorResponse": _obj(
        ("type", "error"),
        type=_const("error"),
        error=_obj(("type", "message"), type=STRING, message=STRING),
    ),
}

SCHEMAS: dict[str, Schema] = {
    **_PARTS,
    **_MESSAGES,
    **_CHAT,
    **_REQUESTS,
    **_RESPONSES,
    **_ANTHROPIC,
}

# operations --------------------------------------------------------------------------

_ERRORS = {
    "400": "The body is invalid; `error.param` names the field.",
    "401": "No or a wrong API key.",
    "403": "The key's role or limits do not allow this call.",
    "404": "No such model (route).",
    "413": "The body is over the size limit.",
    "415": "The body is not JSON.",
    "429": "A rate limit or budget is spent; see `Retry-After`.",
    "502": "The provider failed.",
}


def _errors(error: str) -> dict[str, Schema]:
    return {
        status: {"description": text, "content": {"application/json": {"schema": _ref(error)}}}
        for status, text in _ERRORS.items()
    }


def _call(
    operation_id: str, summary: str, request: str, response: str, *, stream: bool = True
) -> Schema:
    ok: Schema = {"application/json": {"schema": _ref(response)}}
    if stream:
        ok["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-sent events when `stream`."}
        }
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["v1"],
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        },
        "responses": {
            "200": {"description": "The result.", "content": ok},
            **_errors("ErrorResponse"),
        },
    }


_MESSAGES_OP = _call(
    "createMessage",
    "Create a message (Anthropic's Messages API, in front of any chat route)",
    "CreateMessageRequest",
    "AnthropicMessage",
)
_MESSAGES_OP["security"] = [{"bearer": []}, {"anthropic_key": []}]
_MESSAGES_OP["responses"].update(_errors("AnthropicErrorResponse"))

PATHS: dict[str, Schema] = {
    "/v1/chat/completions": {
        "post": _call(
            "createChatCompletion",
            "Create a chat completion",
            "CreateChatCompletionRequest",
            "CreateChatCompletionResponse",
        )
    },
    "/v1/completions": {
        "post": _call(
            "createCompletion",
            "Create a text completion",
            "CreateCompletionRequest",
            "CreateCompletionResponse",
        )
    },
    "/v1/embeddings": {
        "post": _call(
            "createEmbedding",
            "Create embeddings",
            "CreateEmbeddingRequest",
            "CreateEmbeddingResponse",
            stream=False,
        )
    },
    "/v1/models": {
        "get": {
            "operationId": "listModels",
            "summary": "The routes this key may call, then the workspace's pipelines",
            "tags": ["v1"],
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "The routes and `pipeline:<name>[@<alias>]` models.",
                    "content": {"application/json": {"schema": _ref("ListModelsResponse")}},
                },
                "401": _errors("ErrorResponse")["401"],
            },
        }
    },
    "/v1/models/{model}": {
        "get": {
            "operationId": "retrieveModel",
            "summary": "One route or pipeline model",
            "tags": ["v1"],
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "model", "in": "path", "required": True, "schema": STRING},
            ],
            "responses": {
                "200": {
                    "description": "The route.",
                    "content": {"application/json": {"schema": _ref("Model")}},
                },
                "401": _errors("ErrorResponse")["401"],
                "404": _errors("ErrorResponse")["404"],
            },
        }
    },
    "/v1/messages": {"post": _MESSAGES_OP},
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "A Shipyard API key."},
    "anthropic_key": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "A Shipyard API key, as Anthropic's SDK sends it.",
    },
}


def document() -> Schema:
    """The `/v1` part of the OpenAPI document: paths, schemas and security schemes."""
    return {
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }
