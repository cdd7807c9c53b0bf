"""Realistic GenAI trace payloads for the tracing benchmark and tests: 5-span agent
traces (root, chat, tool, chat, embeddings) with `gen_ai.*` and OpenInference
attributes and ~500-byte inputs and outputs, as OTLP protobuf export requests."""

from __future__ import annotations

import os
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

_TEXT = (
    "the order arrived late and the box was damaged please refund my account shipping "
    "invoice support ticket product quality delivery address customer warehouse return "
    "policy replacement tracking number payment card"
)
WORDS = tuple(_TEXT.split(" "))


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def text(rng: random.Random, size: int = 500) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def trace_spans(rng: random.Random, now_ns: int, session: str, user: str) -> list[Span]:
    """One agent trace of five spans."""
    trace_id = os.urandom(16)
    ids = [os.urandom(8) for _ in range(5)]
    t = now_ns
    spans: list[Span] = []
    common = [_kv("session.id", session), _kv("user.id", user)]

    def span(i: int, name: str, parent: bytes, dur_ms: float, attrs: list[KeyValue]) -> None:
        nonlocal t
        start = t
        t += int(dur_ms * 1e6)
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=ids[i],
                parent_span_id=parent,
                name=name,
                kind=Span.SPAN_KIND_CLIENT if i else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start,
                end_time_unix_nano=t,
                attributes=common + attrs,
                status=Status(code=Status.STATUS_CODE_OK),
            )
        )

    def chat(i: int) -> None:
        span(
            i,
            "chat gpt-4o-mini",
            ids[0],
            rng.uniform(200, 900),
            [
                _kv("gen_ai.operation.name", "chat"),
                _kv("gen_ai.provider.name", "openai"),
                _kv("gen_ai.request.model", "gpt-4o-mini"),
                _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                _kv("gen_ai.request.temperature", 0.2),
                _kv("gen_ai.request.max_tokens", 512),
                _kv("gen_ai.response.id", "chatcmpl-" + os.urandom(8).hex()),
                _kv("gen_ai.response.finish_reasons", "stop"),
                _kv("gen_ai.usage.input_tokens", rng.randint(100, 900)),
                _kv("gen_ai.usage.output_tokens", rng.randint(20, 300)),
                _kv("openinference.span.kind", "LLM"),
                _kv("llm.model_name", "gpt-4o-mini"),
                _kv("input.value", text(rng)),
                _kv("input.mime_type", "text/plain"),
                _kv("output.value", text(rng)),
                _kv("output.mime_type", "text/plain"),
                _kv("server.address", "api.openai.com"),
            ],
        )

    span(
        0,
        "support-agent",
        b"",
        0,
        [
            _kv("openinference.span.kind", "AGENT"),
            _kv("input.value", text(rng)),
            _kv("output.value", text(rng)),
        ],
    )
    chat(1)
    span(
        2,
        "execute_tool lookup_order",
        ids[0],
        rng.uniform(5, 50),
        [
            _kv("gen_ai.operation.name", "execute_tool"),
            _kv("gen_ai.tool.name", "lookup_order"),
            _kv("gen_ai.tool.call.id", "call_" + os.urandom(6).hex()),
            _kv("openinference.span.kind", "TOOL"),
            _kv("input.value", f'{{"order_id": "{rng.randint(1, 10**6)}"}}'),
            _kv("output.value", text(rng, 300)),
        ],
    )
    chat(3)
    span(
        4,
        "embeddings text-embedding-3-small",
        ids[0],
        rng.uniform(20, 80),
        [
            _kv("gen_ai.operation.name", "embeddings"),
            _kv("gen_ai.provider.name", "openai"),
            _kv("gen_ai.request.model", "text-embedding-3-small"),
            _kv("gen_ai.usage.input_tokens", rng.randint(50, 200)),
            _kv("openinference.span.kind", "EMBEDDING"),
            _kv("input.value", text(rng)),
        ],
    )
    # the root spans the whole trace
    spans[0].end_time_unix_nano = t
    return spans


def batch(rng: random.Random, spans: int = 512, *, service: str = "support-bot") -> bytes:
    """An OTLP protobuf export request of `spans` spans (whole traces of five)."""
    now = time.time_ns()
    out: list[Span] = []
    while len(out) < spans:
        out += trace_spans(rng, now, f"sess-{rng.randint(1, 500)}", f"user-{rng.randint(1, 50)}")
        now += 1000
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", service)]},
                scope_spans=[ScopeSpans(scope={"name": "bench"}, spans=out[:spans])],
            )
        ]
    )
    return request.SerializeToString()
