"""What a gateway call is made of: the API it speaks (`Api`), what one request carries
(`Call`), and what comes back (`Reply`, `StreamReply`); plus the typed in-process call
(`ChatRequest` -> `ChatResult`) that evaluation, judges and pipelines use."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from shipyard.gateway.config.specs import Deployment
from shipyard.gateway.core import validate
from shipyard.gateway.records.record import Record
from shipyard.identity.actor import Actor
from shipyard.plugins import CHAT, COMPLETIONS, EMBEDDINGS, Provider

Body = dict[str, Any]


@dataclass(frozen=True)
class Api:
    """One OpenAI-shaped API: the route kind it needs and the provider operations that
    serve it, called by name."""

    name: str  # as records show it
    route_kind: str  # chat | embedding
    needs: str  # the provider capability
    check: Callable[[Any], str]  # validates a body, returns its model
    unary: Callable[[Provider, Body, Deployment], Awaitable[Body]]
    stream: Callable[[Provider, Body, Deployment], AsyncIterator[Body]] | None = None


CHAT_API = Api(
    "chat",
    "chat",
    CHAT,
    validate.chat,
    lambda p, b, d: p.chat(b, d),
    lambda p, b, d: p.chat_stream(b, d),
)
MESSAGES_API = replace(CHAT_API, name="messages")  # Anthropic's shape in front, chat behind
COMPLETIONS_API = Api(
    "completions",
    "chat",
    COMPLETIONS,
    validate.completion,
    lambda p, b, d: p.completion(b, d),
    lambda p, b, d: p.completion_stream(b, d),
)
EMBEDDINGS_API = Api(
    "embeddings", "embedding", EMBEDDINGS, validate.embeddings, lambda p, b, d: p.embeddings(b, d)
)

_ids = random.Random(secrets.randbits(128))  # request and trace ids need no crypto, just spread


def new_ids() -> tuple[str, str]:
    return f"req_{_ids.getrandbits(96):024x}", f"{_ids.getrandbits(128):032x}"


@dataclass
class Call:
    """What one request carries through the gateway."""

    actor: Actor
    api: Api
    body: Body
    no_cache: bool = False
    request_id: str = ""
    trace_id: str = ""  # the caller's (W3C traceparent) or a new one
    parent_span_id: str = ""  # the caller's span, from traceparent
    span_id: str = ""  # this call's span
    prompt: str = ""  # the registry prompt version the messages were rendered from
    output: Any = None  # the reply body (unary) or the streamed text, once the call ends
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id, trace_id = new_ids()
            self.trace_id = self.trace_id or trace_id
        if not self.span_id:
            self.span_id = f"{_ids.getrandbits(64) | 1:016x}"


def traceparent(value: bytes | None) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C `traceparent` header; ("", "") when absent
    or malformed (a bad header starts a new trace rather than failing the call)."""
    if not value or len(value) != 55:
        return "", ""
    try:
        version, trace_id, parent, _flags = value.decode("ascii").split("-")
        if version == "ff" or len(trace_id) != 32 or len(parent) != 16:
            return "", ""
        if not int(trace_id, 16) or not int(parent, 16):
            return "", ""
    except ValueError:
        return "", ""
    return trace_id.lower(), parent.lower()


@dataclass
class Reply:
    """A finished call: the JSON body, the Shipyard headers, and its record."""

    body: Body | bytes
    headers: list[tuple[bytes, bytes]]
    record: Record | None = None
    status: int = 200

    def json(self) -> Body:
        if isinstance(self.body, bytes):
            parsed: Body = orjson.loads(self.body)
            return parsed
        return self.body


@dataclass
class StreamReply:
    headers: list[tuple[bytes, bytes]]
    chunks: AsyncIterator[Body]
    # settles the budget and writes the record; idempotent, and the HTTP layer calls it
    # even when it never started reading `chunks`
    finalize: Callable[[], Awaitable[None]]
    record: Record | None = None


@dataclass
class ChatRequest:
    """A chat completion asked for in process: `params` are any other OpenAI chat
    parameters (temperature, max_tokens, tools, response_format, ...)."""

    model: str
    messages: list[Body]
    params: Body = field(default_factory=dict)
    prompt: str = ""  # the registry prompt version the messages were rendered from

    def body(self, *, stream: bool) -> Body:
        out: Body = {**self.params, "model": self.model, "messages": self.messages}
        if stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        else:
            out.pop("stream", None)
        return out


@dataclass
class ChatResult:
    """A chat completion answered in process, with what the record says about it."""

    response: Body  # the `chat.completion`
    request_id: str
    route: str
    deployment: str
    cost_usd: float
    cache: str  # hit | semantic-hit | miss | bypass
    trace_id: str = ""  # the call's span is in this trace
    latency_ms: float = 0.0

    @property
    def content(self) -> str:
        choices = self.response.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) else ""

    @property
    def usage(self) -> Body:
        usage: Body = self.response.get("usage") or {}
        return usage


@dataclass
class EmbedResult:
    """Embeddings computed in process: one vector per text, in order."""

    vectors: list[list[float]]
    request_id: str
    route: str
    cost_usd: float
