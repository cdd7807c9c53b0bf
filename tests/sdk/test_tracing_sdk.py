"""The tracing SDK against a real OTLP/HTTP receiver on loopback (stdlib http.server).

Each test passes its own TracerProvider to `shipyard.init` (the OpenTelemetry global
provider can be set once per process); the global path runs in a subprocess. The last test
exports to the real app on loopback and reads the spans back from its trace store.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

import shipyard
from shipyard import Client
from shipyard.app import create_app
from shipyard.sdk.tracing import TRUNCATED
from shipyard.settings import Settings
from shipyard.tracing.spans import TraceQuery
from tests.support import live_server

KEY = "sk-test-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    request: ExportTraceServiceRequest


@dataclass
class Collector:
    url: str
    received: list[Received] = field(default_factory=list)

    def spans(self) -> list[dict[str, Any]]:
        """Every span that arrived, flattened: name, ids, attributes, status, events."""
        out = []
        for got in list(self.received):
            for rs in got.request.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(
                            {
                                "name": s.name,
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex(),
                                "attributes": _attributes(s.attributes),
                                "status": s.status.code,
                                "message": s.status.message,
                                "events": [e.name for e in s.events],
                                "event_attributes": [_attributes(e.attributes) for e in s.events],
                                "resource": resource,
                                "scope": ss.scope.name,
                                "kind": s.kind,
                            }
                        )
        return out

    def one(self, name: str) -> dict[str, Any]:
        found = [s for s in self.spans() if s["name"] == name]
        assert len(found) == 1, (name, [s["name"] for s in self.spans()])
        return found[0]


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@pytest.fixture
def collector() -> Iterator[Collector]:
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, request)
            )
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Collector(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def provider(collector: Collector) -> Iterator[TracerProvider]:
    """Spans export synchronously (batch=False): they have arrived when the call returns."""
    own = TracerProvider(resource=Resource.create({"service.name": "sdk-tests"}))
    shipyard.init(collector.url, KEY, provider=own, batch=False)
    try:
        yield own
    finally:
        shipyard.shutdown()


def test_a_decorated_call_is_one_span_with_inputs_output_and_the_key(
    collector: Collector, provider: TracerProvider
) -> None:
    @shipyard.trace
    def add(a: int, b: int, *, label: str = "sum") -> dict[str, Any]:
        return {"total": a + b, "label": label}

    assert add(2, 3, label="x") == {"total": 5, "label": "x"}

    span = collector.one(add.__qualname__)
    attrs = span["attributes"]
    assert json.loads(attrs["input.value"]) == {"a": 2, "b": 3, "label": "x"}
    assert attrs["input.mime_type"] == "application/json"
    assert json.loads(attrs["output.value"]) == {"total": 5, "label": "x"}
    assert attrs["output.mime_type"] == "application/json"
    assert attrs["openinference.span.kind"] == "CHAIN"
    assert span["status"] == ProtoStatus.STATUS_CODE_UNSET
    assert span["resource"]["service.name"] == "sdk-tests"
    assert span["scope"] == "shipyard"
    (got,) = collector.received
    assert got.path == "/v1/traces"
    assert got.headers["authorization"] == f"Bearer {KEY}"
    assert got.headers["content-type"] == "application/x-protobuf"


def test_name_kind_and_capture_switches(collector: Collector, provider: TracerProvider) -> None:
    @shipyard.trace(name="search-tool", kind="TOOL", capture_output=False)
    def search(query: str) -> str:
        return "secret result"

    @shipyard.trace(capture_input=False)
    def answer(question: str) -> str:
        return "forty-two"

    search("q")
    answer("what?")
    tool = collector.one("search-tool")["attributes"]
    assert tool["openinference.span.kind"] == "TOOL"
    assert json.loads(tool["input.value"]) == {"query": "q"}
    assert "output.value" not in tool
    plain = collector.one(answer.__qualname__)["attributes"]
    assert "input.value" not in plain
    assert plain["output.value"] == "forty-two"
    assert plain["output.mime_type"] == "text/plain"


def test_capture_content_false_keeps_inputs_and_outputs_out(collector: Collector) -> None:
    own = TracerProvider()
    shipyard.init(collector.url, KEY, provider=own, batch=False, capture_content=False)
    try:

        @shipyard.trace
        def private(card: str) -> str:
            return card

        with shipyard.span("block") as s:
            s.set_input("4111 1111 1111 1111")
            s.set_output("4111 1111 1111 1111")
        private("4111 1111 1111 1111")
    finally:
        shipyard.shutdown()
    spans = collector.spans()
    assert len(spans) == 2  # the block and the traced call
    for span in spans:
        assert not {"input.value", "output.value"} & span["attributes"].keys()
        # every text the spans carry (ids are bytes: their printed form may hold any
        # digits, so they are left out of this check)
        texts = [span["name"], span["message"], *span["events"]]
        texts += [str(v) for v in span["attributes"].values()]
        texts += [str(v) for e in span["event_attributes"] for v in e.values()]
        assert not any("4111" in text for text in texts), span


def test_nested_calls_are_parent_and_children_and_methods_skip_self(
    collector: Collector, provider: TracerProvider
) -> None:
    class Agent:
        @shipyard.trace(kind="AGENT")
        def run(self, task: str) -> str:
            return self.tool(task) + self.fmt(task)

        @shipyard.trace(kind="TOOL")
        def tool(self, arg: str) -> str:
            return arg.upper()

        @classmethod
        @shipyard.trace
        def fmt(cls, arg: str) -> str:
            return "!"

        @staticmethod
        @shipyard.trace
        def helper(x: int) -> int:
            return x

    assert Agent().run("go") == "GO!"
    assert Agent.helper(1) == 1
    root = collector.one(Agent.run.__qualname__)
    tool = collector.one(Agent.tool.__qualname__)
    fmt = collector.one(Agent.fmt.__qualname__)
    helper = collector.one(Agent.helper.__qualname__)
    assert root["parent"] == ""
    assert tool["parent"] == root["span_id"] and fmt["parent"] == root["span_id"]
    assert tool["trace_id"] == root["trace_id"] == fmt["trace_id"]
    assert helper["parent"] == "" and helper["trace_id"] != root["trace_id"]
    assert json.loads(root["attributes"]["input.value"]) == {"task": "go"}
    assert json.loads(fmt["attributes"]["input.value"]) == {"arg": "go"}
    assert json.loads(helper["attributes"]["input.value"]) == {"x": 1}
    assert root["attributes"]["openinference.span.kind"] == "AGENT"


def test_partials_and_callable_objects_can_be_traced(
    collector: Collector, provider: TracerProvider
) -> None:
    def scale(x: int, factor: int) -> int:
        return x * factor

    class Doubler:
        def __call__(self, x: int) -> int:
            return 2 * x

    assert shipyard.trace(functools.partial(scale, factor=3))(2) == 6
    assert shipyard.trace(name="doubler")(Doubler())(4) == 8
    # What the caller passed (the partial's own keywords are not the call's arguments).
    assert json.loads(collector.one("partial")["attributes"]["input.value"]) == {"x": 2}
    assert json.loads(collector.one("doubler")["attributes"]["input.value"]) == {"x": 4}


def test_varargs_and_kwargs_are_captured(collector: Collector, provider: TracerProvider) -> None:
    @shipyard.trace
    def f(a: int, *rest: int, **extra: str) -> None:
        return None

    f(1, 2, 3, mode="fast")
    attrs = collector.one(f.__qualname__)["attributes"]
    assert json.loads(attrs["input.value"]) == {"a": 1, "rest": [2, 3], "mode": "fast"}
    assert attrs["output.value"] == "null"


def test_inputs_and_outputs_are_cut_to_max_chars_with_a_marker(collector: Collector) -> None:
    own = TracerProvider()
    shipyard.init(collector.url, KEY, provider=own, batch=False, max_chars=100)
    try:

        @shipyard.trace
        def echo(text: str) -> str:
            return text * 2

        echo("x" * 10_000)
        with shipyard.span("block", note="y" * 500) as s:
            s.set_output({"big": list(range(1000))})
    finally:
        shipyard.shutdown()
    attrs = collector.one(echo.__qualname__)["attributes"]
    for key in ("input.value", "output.value"):
        assert len(attrs[key]) == 100
        assert attrs[key].endswith(TRUNCATED)
    assert attrs["input.value"].startswith('{"text":"xxx')
    block = collector.one("block")["attributes"]
    assert block["output.value"].startswith('{"big":[0,1,2')
    assert len(block["output.value"]) == 100 and block["output.value"].endswith(TRUNCATED)
    assert block["note"] == "y" * 500  # plain attributes are the caller's, not captured content


def test_an_exception_sets_error_status_is_recorded_and_propagates(
    collector: Collector, provider: TracerProvider
) -> None:
    @shipyard.trace
    def outer() -> None:
        inner()

    @shipyard.trace
    def inner() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        outer()
    for name in (outer.__qualname__, inner.__qualname__):
        span = collector.one(name)
        assert span["status"] == ProtoStatus.STATUS_CODE_ERROR
        assert span["message"].startswith("KeyError")
        assert span["events"] == ["exception"]
        assert span["event_attributes"][0]["exception.type"] == "KeyError"
        assert "output.value" not in span["attributes"]

    with pytest.raises(ValueError), shipyard.span("block"):
        raise ValueError("bad")
    assert collector.one("block")["status"] == ProtoStatus.STATUS_CODE_ERROR


def test_session_and_user_reach_every_span_started_inside_third_party_too(
    collector: Collector, provider: TracerProvider
) -> None:
    other = provider.get_tracer("some.instrumentation")

    @shipyard.trace
    def handle() -> None:
        with other.start_as_current_span("openai.chat"):
            pass

    @shipyard.trace
    def request() -> None:
        with shipyard.session("chat-42"), shipyard.user("alice"):
            handle()

    request()
    handle()  # outside: no session, no user
    root = collector.one(request.__qualname__)
    assert root["attributes"]["session.id"] == "chat-42"
    assert root["attributes"]["user.id"] == "alice"
    spans = collector.spans()
    inside = [s for s in spans if s["trace_id"] == root["trace_id"] and s["parent"]]
    outside = [s for s in spans if s["trace_id"] != root["trace_id"]]
    assert sorted(s["name"] for s in inside) == sorted([handle.__qualname__, "openai.chat"])
    assert sorted(s["name"] for s in outside) == sorted([handle.__qualname__, "openai.chat"])
    for span in inside:
        assert span["attributes"]["session.id"] == "chat-42"
        assert span["attributes"]["user.id"] == "alice"
    assert {s["scope"] for s in inside} == {"shipyard", "some.instrumentation"}
    for span in outside:
        assert not {"session.id", "user.id"} & span["attributes"].keys()
    # An id the caller set on a span is theirs: the context does not overwrite it.
    with shipyard.session("ctx"), shipyard.span("explicit", **{"session.id": "own"}):
        pass
    assert collector.one("explicit")["attributes"]["session.id"] == "own"


async def test_async_functions_nest_and_tasks_keep_their_own_session(
    collector: Collector, provider: TracerProvider
) -> None:
    @shipyard.trace
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n * 10

    @shipyard.trace(kind="AGENT")
    async def conversation(sid: str) -> list[int]:
        with shipyard.session(sid):
            async with shipyard.span("step") as s:
                s.set_input({"sid": sid})
                got = [await fetch(1), await fetch(2)]
                s.set_output(got)
            return got

    results = await asyncio.gather(conversation("s1"), conversation("s2"))
    assert results == [[10, 20], [10, 20]]
    spans = collector.spans()
    roots = {s["span_id"]: s for s in spans if s["name"] == conversation.__qualname__}
    steps = {s["span_id"]: s for s in spans if s["name"] == "step"}
    fetches = [s for s in spans if s["name"] == fetch.__qualname__]
    assert len(roots) == 2 and len(steps) == 2 and len(fetches) == 4
    for step in steps.values():
        root = roots[step["parent"]]
        sid = json.loads(root["attributes"]["input.value"])["sid"]
        assert step["attributes"]["session.id"] == sid == root["attributes"]["session.id"]
        assert json.loads(step["attributes"]["output.value"]) == [10, 20]
    for span in fetches:
        step = steps[span["parent"]]
        assert span["attributes"]["session.id"] == step["attributes"]["session.id"]
        assert span["trace_id"] == step["trace_id"]

    @shipyard.trace
    async def broken() -> None:
        raise RuntimeError("async boom")

    with pytest.raises(RuntimeError):
        await broken()
    assert collector.one(broken.__qualname__)["status"] == ProtoStatus.STATUS_CODE_ERROR


def test_generators_span_their_iteration_and_children_nest(
    collector: Collector, provider: TracerProvider
) -> None:
    @shipyard.trace
    def token(t: str) -> str:
        return t

    @shipyard.trace(kind="LLM")
    def stream(words: list[str]) -> Iterator[str]:
        for w in words:
            yield token(w) + " "

    assert list(stream(["hello", "world"])) == ["hello ", "world "]
    root = collector.one(stream.__qualname__)
    assert root["attributes"]["output.value"] == "hello world "
    assert json.loads(root["attributes"]["input.value"]) == {"words": ["hello", "world"]}
    tokens = [s for s in collector.spans() if s["name"] == token.__qualname__]
    assert [s["parent"] for s in tokens] == [root["span_id"]] * 2

    @shipyard.trace
    def numbers() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("stream cut")

    with pytest.raises(OSError):
        list(numbers())
    cut = collector.one(numbers.__qualname__)
    assert cut["status"] == ProtoStatus.STATUS_CODE_ERROR
    assert json.loads(cut["attributes"]["output.value"]) == [1, 2]

    # Stopping early closes the generator: the span ends with what was yielded, no error.
    gen = stream(["a", "b", "c"])
    assert next(gen) == "a "
    gen.close()
    spans = [s for s in collector.spans() if s["name"] == stream.__qualname__]
    assert spans[-1]["attributes"]["output.value"] == "a "
    assert spans[-1]["status"] == ProtoStatus.STATUS_CODE_UNSET


def test_a_traced_generator_passes_send_and_throw_through(
    collector: Collector, provider: TracerProvider
) -> None:
    @shipyard.trace
    def echo() -> Iterator[str]:
        got = "start"
        while True:
            try:
                got = yield got
            except ValueError as exc:
                got = yield f"caught {exc}"
                return

    gen = echo()
    assert next(gen) == "start"
    assert gen.send("hi") == "hi"
    assert gen.throw(ValueError("x")) == "caught x"
    with pytest.raises(StopIteration):
        gen.send("bye")
    span = collector.one(echo.__qualname__)
    assert span["attributes"]["output.value"] == "starthicaught x"
    assert span["status"] == ProtoStatus.STATUS_CODE_UNSET


async def test_async_generators(collector: Collector, provider: TracerProvider) -> None:
    @shipyard.trace
    async def chunks(n: int) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            yield {"i": i}

    assert [c async for c in chunks(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    attrs = collector.one(chunks.__qualname__)["attributes"]
    assert json.loads(attrs["output.value"]) == [{"i": 0}, {"i": 1}, {"i": 2}]

    gen = chunks(10)
    assert await gen.__anext__() == {"i": 0}
    await gen.aclose()  # stopped early: the span ends with what was yielded, no error
    last = [s for s in collector.spans() if s["name"] == chunks.__qualname__][-1]
    assert json.loads(last["attributes"]["output.value"]) == [{"i": 0}]
    assert last["status"] == ProtoStatus.STATUS_CODE_UNSET


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")

    def model_dump(self, **kwargs: Any) -> Any:
        raise RuntimeError("dump is broken")


def test_values_json_cannot_encode_become_their_repr_and_never_break_the_call(
    collector: Collector, provider: TracerProvider
) -> None:
    cycle: list[Any] = []
    cycle.append(cycle)

    @dataclass
    class Point:
        x: int
        y: int

    @shipyard.trace
    def odd(a: Any, b: Any, c: Any, d: Any, e: Any) -> Any:
        return Opaque()

    result = odd(Opaque(), Hostile(), cycle, {1: "int key", (2, 3): "tuple key"}, Point(1, 2))
    assert isinstance(result, Opaque)
    attrs = collector.one(odd.__qualname__)["attributes"]
    assert attrs["output.value"] == '"<Opaque thing>"'
    assert attrs["input.value"]  # something readable, whatever the arguments were
    assert "<Opaque thing>" in attrs["input.value"]

    @shipyard.trace
    def typed(p: Any, s: Any) -> None:
        return None

    typed(Point(1, 2), {3})
    captured = json.loads(collector.one(typed.__qualname__)["attributes"]["input.value"])
    assert captured == {"p": {"x": 1, "y": 2}, "s": [3]}

    with shipyard.span("attrs", good=1, obj=Opaque(), bad=Hostile(), mixed=[1, "a"]) as s:
        s.set_attribute("list", ["a", "b"])
        s.set_attribute("hostile", Hostile())
        s.set_attribute("none", None)
        s.set_input(Hostile())
    attrs = collector.one("attrs")["attributes"]
    assert attrs["good"] == 1 and attrs["list"] == ["a", "b"]
    assert attrs["obj"] == '"<Opaque thing>"'
    assert attrs["mixed"] == '[1,"a"]'
    assert attrs["hostile"] == attrs["bad"] == '"<Hostile object>"'
    assert "none" not in attrs


def test_batch_export_and_flush(collector: Collector) -> None:
    own = TracerProvider()
    first = shipyard.init(collector.url, KEY, provider=own)
    try:
        assert shipyard.init(collector.url + "/", KEY) is first  # same url and key: no-op

        @shipyard.trace
        def step(i: int) -> int:
            return i

        for i in range(50):
            step(i)
        assert shipyard.flush()
        spans = [s for s in collector.spans() if s["name"] == step.__qualname__]
        assert sorted(json.loads(s["attributes"]["output.value"]) for s in spans) == list(range(50))
        assert all(g.headers["authorization"] == f"Bearer {KEY}" for g in collector.received)
    finally:
        shipyard.shutdown()


def test_init_takes_the_url_and_key_from_the_environment_as_the_client_does(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_URL", collector.url + "/")
    monkeypatch.setenv("SHIPYARD_API_KEY", "sk-from-env")
    shipyard.init(provider=TracerProvider(), batch=False)
    try:
        with shipyard.span("env"):
            pass
    finally:
        shipyard.shutdown()
    assert collector.one("env")
    assert collector.received[0].path == "/v1/traces"
    assert collector.received[0].headers["authorization"] == "Bearer sk-from-env"


def test_a_function_traced_before_init_exports_after_it(collector: Collector) -> None:
    @shipyard.trace
    def early() -> str:
        return "ok"

    own = TracerProvider()
    shipyard.init(collector.url, KEY, provider=own, batch=False)
    try:
        early()
    finally:
        shipyard.shutdown()
    assert collector.one(early.__qualname__)["attributes"]["output.value"] == "ok"


def test_a_sampler_sees_the_kind_and_input_at_the_start_and_dropped_calls_still_run(
    collector: Collector,
) -> None:
    seen: list[dict[str, Any]] = []

    class KeepTools(Sampler):
        """Keeps the TOOL spans only, by the attribute the decorator sets at the start."""

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            seen.append(dict(attributes or {}))
            keep = (attributes or {}).get("openinference.span.kind") == "TOOL"
            return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

        def get_description(self) -> str:
            return "KeepTools"

    own = TracerProvider(sampler=KeepTools())
    shipyard.init(collector.url, KEY, provider=own, batch=False)
    try:

        @shipyard.trace(kind="TOOL")
        def lookup(term: str) -> str:
            return term.upper()

        @shipyard.trace
        def chain(term: str) -> str:
            return lookup(term) + "!"

        assert chain("x") == "X!"
    finally:
        shipyard.shutdown()
    assert [a["openinference.span.kind"] for a in seen] == ["CHAIN", "TOOL"]
    assert [json.loads(a["input.value"]) for a in seen] == [{"term": "x"}, {"term": "x"}]
    assert all(a["input.mime_type"] == "application/json" for a in seen)
    # The dropped CHAIN span still parents the kept TOOL span: one trace, a parent id.
    kept = collector.one(lookup.__qualname__)
    assert [s["name"] for s in collector.spans()] == [lookup.__qualname__]
    assert kept["parent"] != ""
    assert kept["attributes"]["output.value"] == "X"


def test_a_traced_call_joins_the_remote_parent_in_the_current_context(
    collector: Collector, provider: TracerProvider
) -> None:
    @shipyard.trace
    def handle(body: str) -> str:
        with shipyard.span("inner"):
            return body[::-1]

    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    carrier = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        assert handle("abc") == "cba"
    finally:
        otel_context.detach(token)
    outer, inner = collector.one(handle.__qualname__), collector.one("inner")
    assert outer["trace_id"] == inner["trace_id"] == trace_id
    assert outer["parent"] == parent_id
    assert inner["parent"] == outer["span_id"]


GLOBAL_SCRIPT = """
import sys, opentelemetry.trace as otel, shipyard

@shipyard.trace  # before init: its calls go nowhere, and cost little, until then
def work(x):
    with otel.get_tracer("third.party").start_as_current_span("http.get"):
        return x + 1

assert work(0) == 1
provider = shipyard.init(sys.argv[1], "sk-global", service_name="my-app")
assert otel.get_tracer_provider() is provider
assert shipyard.init(sys.argv[1], "sk-global") is provider

with shipyard.session("s-9"):
    assert work(1) == 2
shipyard.shutdown()
"""


def test_init_installs_the_global_provider_for_every_instrumentation(
    collector: Collector,
) -> None:
    subprocess.run([sys.executable, "-c", GLOBAL_SCRIPT, collector.url], check=True, timeout=60)
    work = collector.one("work")
    child = collector.one("http.get")
    assert json.loads(work["attributes"]["input.value"]) == {"x": 1}
    assert work["attributes"]["output.value"] == "2"
    assert work["resource"]["service.name"] == "my-app"
    assert child["parent"] == work["span_id"] and child["scope"] == "third.party"
    assert child["attributes"]["session.id"] == "s-9"
    assert collector.received[0].headers["authorization"] == "Bearer sk-global"


def test_the_readme_example_runs_and_exports_at_exit(collector: Collector) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Tracing from Python", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None
    code = example.group(1).replace("http://127.0.0.1:8000", collector.url)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # no shutdown()
    answer, retrieve, search = (collector.one(n) for n in ("answer", "retrieve", "search"))
    assert retrieve["parent"] == answer["span_id"] and search["parent"] == retrieve["span_id"]
    assert search["attributes"]["openinference.span.kind"] == "TOOL"
    assert json.loads(retrieve["attributes"]["output.value"]) == ["Orders ship within two days."]
    assert retrieve["attributes"]["k"] == 3
    for span in (answer, retrieve, search):
        assert span["attributes"]["session.id"] == "chat-42"
        assert span["attributes"]["user.id"] == "alice"
        assert span["resource"]["service.name"] == "support-bot"
    assert collector.received[0].headers["authorization"] == "Bearer sy-..."


def test_importing_shipyard_does_not_import_opentelemetry() -> None:
    code = "import sys, shipyard; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_init_refuses_a_max_chars_too_small_for_the_marker(collector: Collector) -> None:
    with pytest.raises(ValueError, match="max_chars"):
        shipyard.init(collector.url, KEY, provider=TracerProvider(), max_chars=3)


def test_spans_from_the_sdk_are_stored_by_a_live_server(sqlite_settings: Settings) -> None:
    """`shipyard.init` against the real app on loopback: batched protobuf export, the key's
    workspace, and what Shipyard's ingest reads from the OpenInference attributes."""
    app = create_app(sqlite_settings)
    own = TracerProvider(resource=Resource.create({"service.name": "e2e-app"}))

    @shipyard.trace(name="agent", kind="AGENT")
    def agent(question: str) -> str:
        with shipyard.span("retrieve") as s:
            s.set_output(["doc-1"])
        return "the answer"

    with live_server(app) as url:
        key = orjson.loads(sqlite_settings.credentials_path.read_bytes())["api_key"]  # first start
        with Client(url, key) as api:
            workspace_id = api.me().workspace.id
        shipyard.init(url, key, provider=own)
        try:
            with shipyard.session("chat-7"), shipyard.user("bob"):
                assert agent("why?") == "the answer"
            assert shipyard.flush()
        finally:
            shipyard.shutdown()
        tracing = app.state.platform.services["tracing"]
        tracing.flush()
        (summary,) = tracing.store.traces(workspace_id, TraceQuery(session_id="chat-7")).items
        spans = {s.name: s for s in tracing.store.trace_spans(workspace_id, summary.trace_id).items}
    assert summary.name == "agent" and summary.span_count == 2 and summary.user_id == "bob"
    assert summary.key_id  # the key that sent them
    root, child = spans["agent"], spans["retrieve"]
    assert child.parent_id == root.span_id and root.parent_id == ""
    assert root.service == "e2e-app" and root.session_id == "chat-7" and root.user_id == "bob"
    assert json.loads(root.input) == {"question": "why?"}
    assert root.output == "the answer"
    assert json.loads(child.output) == ["doc-1"] and child.session_id == "chat-7"
