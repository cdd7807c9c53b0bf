"""Tracing from Python: the OpenTelemetry SDK, configured to export to Shipyard.

`init(url, key)` installs a `BatchSpanProcessor(OTLPSpanExporter(...))` (protobuf over
HTTP to `{url}/v1/traces`); `@trace` and `span(...)` open spans that carry OpenInference
attributes (`input.value`, `output.value`, `openinference.span.kind`), so Shipyard's ingest
reads them like spans of any OpenInference instrumentation; `session(...)` and `user(...)`
stamp `session.id` / `user.id` on every span started inside them, third-party ones too.

Capturing never raises into the caller: a value that JSON cannot encode becomes its
`repr`, and every captured text is cut to `max_chars` with `TRUNCATED` at its end.

The OpenTelemetry global provider can be set once per process; tests pass their own
`provider=` to `init` and call `shutdown()` afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Final, TypeVar, cast, overload

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from shipyard.sdk.client import resolve_credentials

__all__ = [
    "TRUNCATED",
    "ContextAttributesProcessor",
    "Span",
    "flush",
    "init",
    "session",
    "shutdown",
    "span",
    "trace",
    "user",
]

F = TypeVar("F", bound=Callable[..., Any])

TRUNCATED: Final = "…[truncated]"
JSON: Final = "application/json"
TEXT: Final = "text/plain"
KIND: Final = "openinference.span.kind"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
INPUT_VALUE: Final = "input.value"
INPUT_MIME: Final = "input.mime_type"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME: Final = "output.mime_type"

_session: ContextVar[str | None] = ContextVar("shipyard_session_id", default=None)
_user: ContextVar[str | None] = ContextVar("shipyard_user_id", default=None)


class _State:
    """What `init` configured. One per process, as the OpenTelemetry global provider is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.capture_content = True
        self.max_chars = 4096
        self.tracer: trace_api.Tracer = trace_api.get_tracer("shipyard")
        self.sdk = False  # `tracer` is an SDK tracer: its spans are recorded unless sampled out
        self.installed: dict[tuple[str, str], tuple[TracerProvider, SpanProcessor]] = {}
        self.stamped: weakref.WeakSet[TracerProvider] = weakref.WeakSet()

    def use(self, tracer: trace_api.Tracer) -> None:
        self.tracer, self.sdk = tracer, isinstance(tracer, SdkTracer)


_state = _State()


# -- configuration -----------------------------------------------------------------------


def init(
    url: str | None = None,
    key: str | None = None,
    *,
    service_name: str | None = None,
    capture_content: bool = True,
    max_chars: int = 4096,
    batch: bool = True,
    provider: TracerProvider | None = None,
    **exporter_options: Any,
) -> TracerProvider:
    """Export spans to the Shipyard server at `url`, authenticated with `key` (as for
    `Client`: else SHIPYARD_URL / SHIPYARD_API_KEY, else the saved credential file).

    The provider is `provider` when given (it is not made global), else the global one
    when it is already an SDK `TracerProvider` (the exporter is added to it), else a new
    provider with `service.name` in its resource, installed as the global provider.
    Calling it again with the same url and key changes nothing but the capture options.
    `exporter_options` go to `OTLPSpanExporter` (`timeout`, `compression`, `headers`...);
    `batch=False` exports each span as it ends (scripts, notebooks).
    """
    if max_chars < len(TRUNCATED) + 1:
        raise ValueError(f"max_chars must be at least {len(TRUNCATED) + 1}")
    base, key = resolve_credentials(url, key)
    with _state.lock:
        _state.capture_content = capture_content
        _state.max_chars = max_chars
        done = _state.installed.get((base, key))
        if done is not None and provider in (None, done[0]):
            _state.use(done[0].get_tracer("shipyard"))
            return done[0]
        if provider is None:
            provider = _global_provider(service_name)
        if provider not in _state.stamped:
            provider.add_span_processor(ContextAttributesProcessor())
            _state.stamped.add(provider)
        headers = {"authorization": f"Bearer {key}", **exporter_options.pop("headers", {})}
        exporter = OTLPSpanExporter(
            endpoint=f"{base}/v1/traces", headers=headers, **exporter_options
        )
        processor: SpanProcessor = _Batch(exporter) if batch else _Simple(exporter)
        provider.add_span_processor(processor)
        _state.installed[(base, key)] = (provider, processor)
        _state.use(provider.get_tracer("shipyard"))
        return provider


def _global_provider(service_name: str | None) -> TracerProvider:
    current = trace_api.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
    provider = TracerProvider(resource=resource)
    if isinstance(current, trace_api.ProxyTracerProvider):
        trace_api.set_tracer_provider(provider)
    # Otherwise another non-SDK provider is global: Shipyard's spans use this one.
    return provider


class _Batch(BatchSpanProcessor):
    # The provider shuts its processors down at exit: after `shutdown()`, once is enough
    # (the exporter logs a warning at a second call).
    _stopped = False

    def shutdown(self) -> None:
        if not self._stopped:
            self._stopped = True
            super().shutdown()  # type: ignore[no-untyped-call] # the SDK leaves it unannotated


class _Simple(SimpleSpanProcessor):
    _stopped = False

    def shutdown(self) -> None:
        if not self._stopped:
            self._stopped = True
            super().shutdown()


def flush(timeout_millis: int = 30_000) -> bool:
    """Export every span ended so far; False if an exporter did not finish in time."""
    with _state.lock:
        processors = [p for _, p in _state.installed.values()]
    return all([p.force_flush(timeout_millis) for p in processors])


def shutdown() -> None:
    """Flush and stop the exporters `init` added, and forget them (the provider stays)."""
    with _state.lock:
        processors = [p for _, p in _state.installed.values()]
        _state.installed.clear()
        _state.capture_content = True
        _state.max_chars = 4096
        _state.use(trace_api.get_tracer("shipyard"))
    for processor in processors:
        processor.shutdown()


class ContextAttributesProcessor(SpanProcessor):
    """Stamps `session.id` / `user.id` from `session()` / `user()` on every span started
    in them, whoever starts it. `init` adds it; add it yourself to a provider you build."""

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        session_id, user_id = _session.get(), _user.get()
        if session_id is None and user_id is None:
            return
        present = span.attributes or {}
        if session_id is not None and SESSION_ID not in present:
            span.set_attribute(SESSION_ID, session_id)
        if user_id is not None and USER_ID not in present:
            span.set_attribute(USER_ID, user_id)

    def on_end(self, span: ReadableSpan) -> None:
        pass


# -- capturing values --------------------------------------------------------------------


def _cut(text: str) -> str:
    limit = _state.max_chars
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def _encode_default(value: object) -> object:
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(mode="json")
        except Exception:
            return _repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return dataclasses.asdict(value)
        except Exception:
            return _repr(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return _repr(value)


def _repr(value: object) -> str:
    try:
        return _cut(repr(value))
    except Exception:
        return f"<{type(value).__qualname__} object>"


_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _to_json(value: object) -> str:
    try:
        return orjson.dumps(value, default=_encode_default, option=_OPTIONS).decode()
    except Exception:  # a cycle, keys JSON has no form for, a failing model_dump
        return orjson.dumps(_repr(value)).decode()


def _fields_json(bound: dict[str, object]) -> str:
    """Arguments orjson could not encode as one object, a field at a time: one that cannot
    be encoded spoils only its own value."""
    fields = (f"{orjson.dumps(k).decode()}:{_to_json(v)}" for k, v in bound.items())
    return "{" + ",".join(fields) + "}"


def _set_value(span: trace_api.Span, key: str, mime_key: str, value: object) -> None:
    try:
        if isinstance(value, str):
            text, mime = value, TEXT
        else:
            try:
                text = orjson.dumps(value, default=_encode_default, option=_OPTIONS).decode()
            except Exception:
                text = _to_json(value)
            mime = JSON
        if len(text) > _state.max_chars:
            text = _cut(text)
        # Two calls cost less than one `set_attributes` of two (it validates the mapping too).
        span.set_attribute(key, text)
        span.set_attribute(mime_key, mime)
    except Exception:  # capturing never breaks the caller
        pass


def _attribute(value: object) -> AttributeValue | None:
    """A value OpenTelemetry accepts as an attribute: primitives as they are, else JSON."""
    if value is None:
        return None
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value:
        kind = type(value[0])
        if kind in (str, bool, int, float) and all(type(v) is kind for v in value):
            return list(value)
    return _cut(_to_json(value))


def _fail(span: trace_api.Span, exc: BaseException) -> None:
    try:
        span.record_exception(exc, escaped=True)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    except Exception:
        pass


# -- the decorator -----------------------------------------------------------------------


class _Call:
    """What a decorated function needs at each call, worked out once when decorating.

    Per call it adds a few Python calls to OpenTelemetry's own: one read of the current
    context, the arguments bound by name (the signature is read once, here), the input and
    the output each encoded by one orjson call, the input in the start attributes (which
    samplers see) and the output set as the call returns.
    """

    __slots__ = ("name", "kind", "capture_input", "capture_output", "names", "varargs", "skip")

    def __init__(
        self, fn: Callable[..., Any], name: str, kind: str, capture_input: bool, out: bool
    ) -> None:
        self.name, self.kind = name, kind
        self.capture_input, self.capture_output = capture_input, out
        self.names: tuple[str, ...] = ()
        self.varargs: str | None = None
        self.skip: str | None = None
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # builtins without a signature
            return
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.names = tuple(p.name for p in params if p.kind in positional)
        self.varargs = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
        if self.names and self.names[0] in ("self", "cls"):
            self.skip = self.names[0]

    def start(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[trace_api.Span, otel_context.Context]:
        """The span, started as a child of the current context, and that context with the
        span in it (the context is read once: `start_span` alone reads it three times)."""
        parent = otel_context.get_current()
        attributes: dict[str, AttributeValue] = {KIND: self.kind}
        tracer = _state.tracer
        # Nothing to capture for a span that will not be recorded (no provider, sampled out).
        if self.capture_input and _state.capture_content and (_state.sdk or _records(tracer)):
            try:
                bound = dict(zip(self.names, args, strict=False))
                if self.varargs is not None and len(args) > len(self.names):
                    bound[self.varargs] = args[len(self.names) :]
                if kwargs:
                    bound.update(kwargs)
                if self.skip is not None:
                    bound.pop(self.skip, None)
                try:
                    text = orjson.dumps(bound, default=_encode_default, option=_OPTIONS).decode()
                except Exception:
                    text = _fields_json(bound)
                if len(text) > _state.max_chars:
                    text = _cut(text)
                attributes[INPUT_VALUE], attributes[INPUT_MIME] = text, JSON
            except Exception:
                pass
        span = tracer.start_span(self.name, parent, attributes=attributes)
        return span, trace_api.set_span_in_context(span, parent)

    def finish(self, span: trace_api.Span, result: object) -> None:
        if self.capture_output and _state.capture_content and span.is_recording():
            _set_value(span, OUTPUT_VALUE, OUTPUT_MIME, result)


def _records(tracer: trace_api.Tracer) -> bool:
    """False when spans from `tracer` are certainly dropped: the no-op tracer, directly or
    behind the proxy the API hands out until a provider is set."""
    if isinstance(tracer, trace_api.ProxyTracer):  # it has no public accessor
        tracer = getattr(tracer, "_tracer", tracer)
    return not isinstance(tracer, trace_api.NoOpTracer)


class _Output:
    """The yields of a generator, kept until they pass `max_chars` (then cut)."""

    __slots__ = ("items", "size", "full")

    def __init__(self) -> None:
        self.items: list[object] = []
        self.size = 0
        self.full = False

    def add(self, item: object) -> None:
        if self.full:
            return
        self.items.append(item)
        self.size += len(item) if isinstance(item, str) else len(_to_json(item))
        self.full = self.size > _state.max_chars

    def value(self) -> object:
        if self.items and all(isinstance(i, str) for i in self.items):
            joined = "".join(map(str, self.items))
            return joined + TRUNCATED if self.full else joined
        return self.items + [TRUNCATED] if self.full else self.items


@overload
def trace(fn: F, /) -> F: ...


@overload
def trace(
    *,
    name: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    kind: str = "CHAIN",
) -> Callable[[F], F]: ...


def trace(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    kind: str = "CHAIN",
) -> F | Callable[[F], F]:
    """One span per call of a function, coroutine function or generator function.

    The span is named after the function (or `name`), has `openinference.span.kind` =
    `kind` (CHAIN, LLM, TOOL, AGENT, RETRIEVER, EMBEDDING...), the bound arguments as
    JSON in `input.value` (self and cls left out) and the result in `output.value`.
    An exception sets the error status, is recorded as an event and propagates.
    """

    def decorate(fn: F) -> F:
        return cast(F, _wrap(fn, name, kind, capture_input, capture_output))

    return decorate if fn is None else decorate(fn)


def _wrap(fn: Any, name: str | None, kind: str, capture_input: bool, out: bool) -> Any:
    if isinstance(fn, staticmethod | classmethod):
        return type(fn)(_wrap(fn.__func__, name, kind, capture_input, out))
    default = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)  # partials
    call = _Call(fn, name or default or type(fn).__qualname__, kind, capture_input, out)
    if inspect.isasyncgenfunction(fn):
        traced = _async_generator(fn, call)
    elif inspect.isgeneratorfunction(fn):
        traced = _generator(fn, call)
    elif inspect.iscoroutinefunction(fn):
        traced = _coroutine(fn, call)
    else:
        traced = _function(fn, call)
    return functools.wraps(fn)(traced)


def _function(fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    def traced(*args: Any, **kwargs: Any) -> Any:
        span, current = call.start(args, kwargs)
        token = otel_context.attach(current)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _fail(span, exc)
            raise
        else:
            call.finish(span, result)
            return result
        finally:
            otel_context.detach(token)
            span.end()

    return traced


def _coroutine(fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    async def traced(*args: Any, **kwargs: Any) -> Any:
        span, current = call.start(args, kwargs)
        token = otel_context.attach(current)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            _fail(span, exc)
            raise
        else:
            call.finish(span, result)
            return result
        finally:
            otel_context.detach(token)
            span.end()

    return traced


def _generator(fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    # The span is current only while the generator's own code runs (each step), never
    # across a `yield`: the consumer's code between steps is not inside it.
    def traced(*args: Any, **kwargs: Any) -> Iterator[Any]:
        span, current = call.start(args, kwargs)
        output = _Output()
        try:
            token = otel_context.attach(current)
            try:
                gen = fn(*args, **kwargs)
            finally:
                otel_context.detach(token)
            step, arg = gen.send, None
            while True:
                token = otel_context.attach(current)
                try:
                    item = step(arg)
                except StopIteration:
                    break
                finally:
                    otel_context.detach(token)
                if call.capture_output:
                    output.add(item)
                try:
                    arg, step = (yield item), gen.send
                except GeneratorExit:
                    gen.close()
                    raise
                except BaseException as exc:  # thrown into us: the generator's to handle
                    arg, step = exc, gen.throw
        except GeneratorExit:
            raise
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            call.finish(span, output.value())
            span.end()

    return traced


def _async_generator(fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    async def traced(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        span, current = call.start(args, kwargs)
        output = _Output()
        try:
            token = otel_context.attach(current)
            try:
                gen = fn(*args, **kwargs)
            finally:
                otel_context.detach(token)
            step, arg = gen.asend, None
            while True:
                token = otel_context.attach(current)
                try:
                    item = await step(arg)
                except StopAsyncIteration:
                    break
                finally:
                    otel_context.detach(token)
                if call.capture_output:
                    output.add(item)
                try:
                    arg, step = (yield item), gen.asend
                except GeneratorExit:
                    await gen.aclose()
                    raise
                except BaseException as exc:
                    arg, step = exc, gen.athrow
        except GeneratorExit:
            raise
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            call.finish(span, output.value())
            span.end()

    return traced


# -- the context managers ----------------------------------------------------------------


class Span:
    """`with shipyard.span("name", **attributes) as s:` (or `async with`): a span that is
    current inside the block; an exception sets its error status and propagates."""

    __slots__ = ("name", "_kind", "_attributes", "_span", "_token")

    def __init__(self, name: str, kind: str, attributes: Mapping[str, object]) -> None:
        self.name, self._kind, self._attributes = name, kind, attributes
        self._span: trace_api.Span = trace_api.INVALID_SPAN
        self._token: Token[otel_context.Context] | None = None

    @property
    def otel_span(self) -> trace_api.Span:
        """The OpenTelemetry span, for what this class does not wrap."""
        return self._span

    def set_input(self, value: object) -> None:
        if _state.capture_content:
            _set_value(self._span, INPUT_VALUE, INPUT_MIME, value)

    def set_output(self, value: object) -> None:
        if _state.capture_content:
            _set_value(self._span, OUTPUT_VALUE, OUTPUT_MIME, value)

    def set_attribute(self, key: str, value: object) -> None:
        try:
            attribute = _attribute(value)
            if attribute is not None:
                self._span.set_attribute(key, attribute)
        except Exception:
            pass

    def __enter__(self) -> Span:
        attributes: dict[str, AttributeValue] = {KIND: self._kind}
        for key, value in self._attributes.items():
            try:
                attribute = _attribute(value)
            except Exception:
                continue
            if attribute is not None:
                attributes[key] = attribute
        parent = otel_context.get_current()
        self._span = _state.tracer.start_span(self.name, parent, attributes=attributes)
        self._token = otel_context.attach(trace_api.set_span_in_context(self._span, parent))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            _fail(self._span, exc)
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        self._span.end()

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def span(name: str, *, kind: str = "CHAIN", **attributes: object) -> Span:
    """A span around a block: `with shipyard.span("retrieve", k=3) as s: s.set_output(x)`."""
    return Span(name, kind, attributes)


class _Scope:
    """Sets a context variable for a block, and stamps the span current at its start."""

    __slots__ = ("_var", "_attribute", "_value", "_token")

    def __init__(self, var: ContextVar[str | None], attribute: str, value: str) -> None:
        self._var, self._attribute, self._value = var, attribute, str(value)
        self._token: Token[str | None] | None = None

    def __enter__(self) -> str:
        self._token = self._var.set(self._value)
        current = trace_api.get_current_span()
        if current.is_recording():
            current.set_attribute(self._attribute, self._value)
        return self._value

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            with contextlib.suppress(ValueError):  # exited in another context than entered
                self._var.reset(self._token)
            self._token = None

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def session(session_id: str) -> _Scope:
    """`with shipyard.session("chat-42"):` every span started inside has `session.id`."""
    return _Scope(_session, SESSION_ID, session_id)


def user(user_id: str) -> _Scope:
    """`with shipyard.user("alice"):` every span started inside has `user.id`."""
    return _Scope(_user, USER_ID, user_id)
