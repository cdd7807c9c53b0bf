"""`POST /v1/traces` on the live app: real OpenTelemetry SDK exporters (protobuf), OTLP
JSON, gzip, partial success, hostile bodies, masking before anything is written,
back-pressure (503 + Retry-After) with nothing acknowledged lost, idempotent retries,
and gateway calls as spans joined to the caller's trace."""

from __future__ import annotations

import fcntl
import gzip
import os
import random
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status as OtelStatus
from opentelemetry.trace import StatusCode

from shipyard.tracing.spans import TraceQuery
from tests.gateway.conftest import Env, make_env

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import otlp_payload  # noqa: E402

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path, trace_queue_spans=1024)


def tracing(env: Env) -> Any:
    return env.app.state.platform.tracing


def workspace(env: Env) -> str:
    return str(env.admin.get("/api/me").json()["workspace"]["id"])


def stored(env: Env, **filters: Any) -> list[Any]:
    t = tracing(env)
    t.flush()
    return list(t.store.traces(workspace(env), TraceQuery(limit=200, **filters)).items)


def spans_of(env: Env, trace_id: str) -> list[Any]:
    t = tracing(env)
    t.flush()
    return list(t.store.trace_spans(workspace(env), trace_id).items)


def provider(env: Env, key: str) -> TracerProvider:
    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    exporter = OTLPSpanExporter(
        endpoint=f"{env.url}/v1/traces", headers={"authorization": f"Bearer {key}"}
    )
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def test_sdk_exporter_spans_are_stored_with_genai_fields(env: Env) -> None:
    tp = provider(env, env.owner_key)
    tracer = tp.get_tracer("app")
    with tracer.start_as_current_span("agent") as root:
        root.set_attribute("session.id", "s-1")
        root.set_attribute("user.id", "u-1")
        root.set_attribute("input.value", "where is my order?")
        with tracer.start_as_current_span("chat gpt-4o-mini") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            chat.set_attribute("gen_ai.usage.input_tokens", 1000)
            chat.set_attribute("gen_ai.usage.output_tokens", 500)
            chat.set_attribute("gen_ai.input.messages", '[{"role":"user","content":"hi"}]')
            chat.set_attribute("gen_ai.output.messages", '[{"role":"assistant","content":"ok"}]')
        with tracer.start_as_current_span("lookup") as tool:
            tool.set_status(OtelStatus(StatusCode.ERROR, "no such order"))
    tp.shutdown()
    trace_id = f"{root.get_span_context().trace_id:032x}"

    [summary] = stored(env)
    assert summary.trace_id == trace_id
    assert summary.name == "agent" and summary.span_count == 3 and summary.error_count == 1
    assert summary.service == "support-bot" and summary.session_id == "s-1"
    assert summary.input_tokens == 1000 and summary.output_tokens == 500
    # gpt-4o-mini from the price table: 0.15 in, 0.60 out per 1M tokens
    assert summary.cost_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    by_name = {s.name: s for s in spans_of(env, trace_id)}
    chat_span = by_name["chat gpt-4o-mini"]
    assert chat_span.parent_id == f"{root.get_span_context().span_id:016x}"
    assert chat_span.model == "gpt-4o-mini" and chat_span.operation == "chat"
    assert chat_span.provider == "openai" and chat_span.kind == "internal"
    assert '"hi"' in chat_span.input and '"ok"' in chat_span.output
    assert "gen_ai.input.messages" not in chat_span.attributes  # kept once, as the input
    assert by_name["agent"].input == "where is my order?"
    assert by_name["lookup"].status == "error"
    assert by_name["lookup"].status_message == "no such order"
    assert chat_span.key_id and chat_span.workspace_id == workspace(env)


def _json_span(trace_id: str, span_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "json span",
        "kind": 3,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000500000000",
        "attributes": [
            {"key": "llm.model_name", "value": {"stringValue": "gpt-4o"}},
            {"key": "llm.token_count.prompt", "value": {"intValue": "12"}},
            {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
            {"key": "output.value", "value": {"stringValue": "fine"}},
        ],
        **extra,
    }


def test_json_with_partial_success(env: Env) -> None:
    tid = os.urandom(16).hex()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            _json_span(tid, os.urandom(8).hex()),
                            _json_span(tid, "not-hex-at-all!!"),
                            _json_span("00" * 16, os.urandom(8).hex()),
                            _json_span(tid, os.urandom(8).hex(), attributes="oops"),
                        ],
                    }
                ],
            }
        ]
    }
    r = env.admin.post("/v1/traces", json=body)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3"
    assert "spanId" in partial["errorMessage"] and "traceId" in partial["errorMessage"]
    [summary] = stored(env)
    assert summary.span_count == 1 and summary.service == "js-app"
    [span] = spans_of(env, tid)
    assert span.kind == "client" and span.model == "gpt-4o" and span.input_tokens == 12
    assert span.operation == "llm" and span.output == "fine" and span.duration_ms == 500


def test_gzip_and_hostile_bodies(env: Env) -> None:
    raw = otlp_payload.batch(random.Random(1), spans=10)
    r = env.admin.post(
        "/v1/traces", content=gzip.compress(raw), headers={**PROTOBUF, "content-encoding": "gzip"}
    )
    assert r.status_code == 200, r.text
    assert ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans == 0
    assert sum(t.span_count for t in stored(env)) == 10

    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # ~64 KB that inflates to 64 MiB
    deflate = {**PROTOBUF, "content-encoding": "deflate"}
    r = env.admin.post("/v1/traces", content=bomb, headers=deflate)
    assert r.status_code == 413
    assert "inflates" in Status.FromString(r.content).message

    cases = [
        (b"\x0a\xff\xff\xff", PROTOBUF, 400, "protobuf"),
        (b"not gzip", {**PROTOBUF, "content-encoding": "gzip"}, 400, "gzip"),
        (raw, {**PROTOBUF, "content-encoding": "br"}, 415, "Content-Encoding"),
        (raw, {"content-type": "text/plain"}, 415, "x-protobuf"),
    ]
    for body, headers, status, word in cases:
        r = env.admin.post("/v1/traces", content=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert word in Status.FromString(r.content).message
    r = env.admin.post("/v1/traces", content=b"[1,", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    for bad in ([1, 2], {"resourceSpans": 5}, {"resourceSpans": [{"scopeSpans": "x"}]}):
        r = env.admin.post("/v1/traces", json=bad)
        assert r.status_code == 400, r.text
        assert r.json()["status"] == 400

    r = env.admin.get("/v1/traces")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_authentication_and_roles(env: Env) -> None:
    raw = otlp_payload.batch(random.Random(2), spans=5)
    r = httpx.post(f"{env.url}/v1/traces", content=raw, headers=PROTOBUF)
    assert r.status_code == 401
    assert Status.FromString(r.content).code == 16  # UNAUTHENTICATED
    r = httpx.post(
        f"{env.url}/v1/traces", content=raw, headers={**PROTOBUF, "authorization": "Bearer sy-x"}
    )
    assert r.status_code == 401
    viewer, _ = env.key("viewer", role="viewer")
    as_viewer = {**PROTOBUF, "authorization": f"Bearer {viewer}"}
    r = httpx.post(f"{env.url}/v1/traces", content=raw, headers=as_viewer)
    assert r.status_code == 403
    app_key, app_id = env.key("app", role="app")
    r = httpx.post(f"{env.url}/v1/traces", content=raw, headers={**PROTOBUF, "x-api-key": app_key})
    assert r.status_code == 200
    assert {t.key_id for t in stored(env)} == {app_id}


def test_masked_before_the_write_ahead_log_and_the_store(env: Env, tmp_path: Path) -> None:
    tid = os.urandom(16).hex()
    secret_input = "mail me at jane.doe@example.com, card 4111 1111 1111 1111"
    span = _json_span(tid, os.urandom(8).hex())
    span["attributes"] += [
        {"key": "input.value", "value": {"stringValue": secret_input}},
        {"key": "client.ip", "value": {"stringValue": "203.0.113.9"}},
        {"key": "api_key", "value": {"stringValue": "sk-proj-abcdefghijklmnopqrstuvwx"}},
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    assert env.admin.post("/v1/traces", json=body).status_code == 200
    [stored_span] = spans_of(env, tid)
    assert "jane.doe" not in stored_span.input and "[EMAIL]" in stored_span.input
    assert "4111" not in stored_span.input and "[CARD]" in stored_span.input
    assert stored_span.attributes["client.ip"] == "[IP]"
    assert "abcdefgh" not in str(stored_span.attributes["api_key"])
    # nothing unmasked anywhere under the data dir: the log, the trace store
    home = tmp_path / "home"
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"jane.doe@example.com" not in data, path
            assert b"4111 1111 1111 1111" not in data, path


def test_pii_anywhere_in_a_large_batch_is_masked_and_only_there(env: Env) -> None:
    """Ingest checks a request's spans at once and masks only the spans that hold
    something: PII in the 1st, 137th and last of 300 spans (an output, a span name, a
    secret-named key inside a nested value, an event attribute) is masked; the others
    are stored exactly as sent."""
    tid = os.urandom(16).hex()
    spans = [_json_span(tid, f"{i + 1:016x}") for i in range(300)]
    spans[0]["attributes"][3] = {
        "key": "output.value",
        "value": {"stringValue": "call +44 20 7946 0958"},
    }
    spans[136]["name"] = "lookup jane.doe@example.com"
    spans[136]["attributes"].append(
        {
            "key": "request",
            "value": {
                "kvlistValue": {
                    "values": [{"key": "password", "value": {"stringValue": "hunter2"}}]
                }
            },
        }
    )
    spans[299]["events"] = [
        {
            "name": "log",
            "timeUnixNano": "1700000000100000000",
            "attributes": [{"key": "client", "value": {"stringValue": "10.1.2.3"}}],
        }
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    assert env.admin.post("/v1/traces", json=body).status_code == 200
    t = tracing(env)
    t.flush()
    ws = workspace(env)
    got = {s.span_id: s for s in t.store.trace_spans(ws, tid, limit=500).items}
    assert len(got) == 300
    assert got[f"{1:016x}"].output == "call [PHONE]"
    masked = got[f"{137:016x}"]
    assert masked.name == "lookup [EMAIL]"
    assert masked.attributes["request"] == {"password": "[SECRET]"}
    assert got[f"{300:016x}"].events[0]["attributes"] == {"client": "[IP]"}
    for i in (2, 136, 138, 299):
        plain = got[f"{i:016x}"]
        assert (plain.name, plain.output) == ("json span", "fine")
        assert plain.attributes["llm.model_name"] == "gpt-4o"


def test_back_pressure_then_nothing_acknowledged_is_lost(env: Env, tmp_path: Path) -> None:
    """The writer is held (the store file's writer lock, taken here): acknowledged spans
    pile up to the bound, then ingest answers 503 with Retry-After; once the writer runs
    again every acknowledged span is stored."""
    lock = os.open(tmp_path / "home" / "traces.writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    acked = refused = 0
    rng = random.Random(3)
    try:
        for _ in range(8):
            r = env.admin.post(
                "/v1/traces", content=otlp_payload.batch(rng, spans=500), headers=PROTOBUF
            )
            if r.status_code == 200:
                acked += 500
            else:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert Status.FromString(r.content).code == 14  # UNAVAILABLE
                refused += 1
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert acked >= 1000 and refused >= 1
    assert sum(t.span_count for t in stored(env)) == acked


def test_a_retried_batch_is_stored_once(env: Env) -> None:
    raw = otlp_payload.batch(random.Random(4), spans=25)
    for _ in range(2):
        assert env.admin.post("/v1/traces", content=raw, headers=PROTOBUF).status_code == 200
    traces = stored(env)
    assert sum(t.span_count for t in traces) == 25
    assert len(traces) == 5


def test_a_gateway_call_is_a_span_in_the_callers_trace(env: Env) -> None:
    env.provider()
    env.route("mini")
    caller_trace, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    r = env.admin.post(
        "/v1/chat/completions",
        json={"model": "mini", "messages": [{"role": "user", "content": "hello"}], "user": "u-9"},
        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-shipyard-trace-id"] == caller_trace
    [span] = spans_of(env, caller_trace)
    assert span.parent_id == caller_span and span.service == "shipyard-gateway"
    assert span.route == "mini" and span.model == "gpt-4o-mini" and span.operation == "chat"
    assert span.input_tokens > 0 and span.user_id == "u-9" and span.kind == "server"
    record = env.records()[0]
    assert span.attributes["shipyard.request_id"] == record["id"]
    assert '"hello"' in span.input  # the messages, as JSON
    assert span.output == r.json()["choices"][0]["message"]["content"]

    # a stream: the span's output is the text the client was sent
    with env.admin.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "mini", "messages": [{"role": "user", "content": "tell"}], "stream": True},
    ) as streamed:
        chunks = [line for line in streamed.iter_lines() if line.startswith("data: {")]
        stream_trace = streamed.headers["x-shipyard-trace-id"]
    text = "".join(
        c["delta"].get("content") or ""
        for line in chunks
        for c in orjson.loads(line[6:])["choices"]
    )
    [span] = spans_of(env, stream_trace)
    assert text and span.output == text and span.attributes["shipyard.stream"] is True

    # without traceparent (or with a malformed one): a trace of its own
    r = env.admin.post(
        "/v1/chat/completions",
        json={"model": "mini", "messages": [{"role": "user", "content": "again"}]},
        headers={"traceparent": "00-zz-yy-01"},
    )
    own = r.headers["x-shipyard-trace-id"]
    assert own != caller_trace
    [span] = spans_of(env, own)
    assert span.parent_id == ""


def test_off_the_shelf_openinference_instrumentation(env: Env) -> None:
    """openinference-instrumentation-openai on the official openai SDK, calling the
    gateway, exporting to Shipyard: model, tokens, input and output with no extra work."""
    import openai
    from openinference.instrumentation.openai import OpenAIInstrumentor

    env.provider()
    env.route("mini")
    tp = provider(env, env.owner_key)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    try:
        client = openai.OpenAI(base_url=f"{env.url}/v1", api_key=env.owner_key)
        reply = client.chat.completions.create(
            model="mini", messages=[{"role": "user", "content": "What is a shipyard?"}]
        )
        assert reply.choices[0].message.content
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    traces = [t for t in stored(env) if t.service == "support-bot"]
    assert len(traces) == 1
    [span] = spans_of(env, traces[0].trace_id)
    assert span.operation == "llm" and span.model.startswith("gpt-4o-mini")
    assert "What is a shipyard?" in span.input
    assert reply.choices[0].message.content in span.output
    assert span.input_tokens == reply.usage.prompt_tokens  # type: ignore[union-attr]  # the fake reports usage
    assert orjson.loads(orjson.dumps(span.attributes))  # stored attributes are plain JSON


def test_content_capture_off_keeps_no_contents(env: Env) -> None:
    env.provider()
    env.route("mini")
    r = env.admin.put("/api/tracing/settings", json={"capture_content": False})
    assert r.status_code == 200, r.text
    r = env.admin.post(
        "/v1/chat/completions",
        json={"model": "mini", "messages": [{"role": "user", "content": "private words"}]},
    )
    [gateway] = spans_of(env, r.headers["x-shipyard-trace-id"])
    assert gateway.input == "" and gateway.output == "" and gateway.input_tokens > 0

    tid = os.urandom(16).hex()
    span = _json_span(tid, os.urandom(8).hex())
    span["attributes"] += [
        {"key": "input.value", "value": {"stringValue": "private words"}},
        {"key": "llm.input_messages.0.message.content", "value": {"stringValue": "private"}},
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    assert env.admin.post("/v1/traces", json=body).status_code == 200
    [stored_span] = spans_of(env, tid)
    assert stored_span.input == "" and stored_span.output == ""
    assert "private" not in orjson.dumps(stored_span.attributes).decode()
    assert stored_span.model == "gpt-4o" and stored_span.input_tokens == 12
