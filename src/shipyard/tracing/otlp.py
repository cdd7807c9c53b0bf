"""OTLP trace export requests (protobuf or JSON) to `Span`s.

What a span means is read from the attributes off-the-shelf instrumentations write:
the OpenTelemetry GenAI semantic conventions (`gen_ai.*` attributes, and the older
message events), OpenInference (`openinference.span.kind`, `llm.*`, `input.value`,
`output.value`, `session.id`, `user.id`) and the Traceloop/OpenLLMetry flattening
(`gen_ai.prompt.0.content`). A span that cannot be read (bad ids, no start time, wrong
types) is rejected alone and counted, the OTLP way (`partial_success`); the others are
kept. Contents are cut to `max_chars` and every string is masked before it leaves this
module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from shipyard.errors import InvalidInput
from shipyard.tracing.masking import Masker
from shipyard.tracing.spans import KINDS, Span

MAX_ATTRIBUTES = 256  # per span, as OpenTelemetry's own default limit is 128
MAX_EVENTS = 128
MAX_VALUE_CHARS = 8192  # one attribute's string value
MAX_DEPTH = 8  # nested arrays and key-value lists
_INT64 = (1 << 63) - 1

_KIND_NAMES = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_KIND_JSON = {
    **{str(k): v for k, v in _KIND_NAMES.items()},
    "SPAN_KIND_UNSPECIFIED": "internal",
    "SPAN_KIND_INTERNAL": "internal",
    "SPAN_KIND_SERVER": "server",
    "SPAN_KIND_CLIENT": "client",
    "SPAN_KIND_PRODUCER": "producer",
    "SPAN_KIND_CONSUMER": "consumer",
}
_STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
_STATUS_JSON = {
    **{str(k): v for k, v in _STATUS_NAMES.items()},
    "STATUS_CODE_UNSET": "unset",
    "STATUS_CODE_OK": "ok",
    "STATUS_CODE_ERROR": "error",
}

# The content attributes: read into Span.input / Span.output and not kept twice.
_INPUT_KEYS = ("input.value", "gen_ai.input.messages", "gen_ai.prompt", "llm.prompts")
_OUTPUT_KEYS = ("output.value", "gen_ai.output.messages", "gen_ai.completion")
_CONTENT_KEYS = frozenset(_INPUT_KEYS + _OUTPUT_KEYS)


NO_MASK = Masker.none()  # masks nothing, at no cost (falsy: the reader skips it)
Prices = Callable[[str], tuple[float, float] | None]  # model -> USD per 1M tokens (in, out)


@dataclass
class Decoded:
    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < 5 and reason not in self.errors:
            self.errors.append(reason)

    @property
    def message(self) -> str:
        return "; ".join(self.errors)


@dataclass(frozen=True)
class Reader:
    """Reads one export request for one workspace and key."""

    workspace_id: str
    key_id: str
    masker: Masker = NO_MASK
    max_chars: int = 16384
    capture_content: bool = True
    price: Prices | None = None

    # protobuf ------------------------------------------------------------------------

    def protobuf(self, body: bytes) -> Decoded:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise InvalidInput(
                f"the body is not an OTLP ExportTraceServiceRequest in protobuf ({exc})"
            ) from None
        out = Decoded()
        for rs in request.resource_spans:
            resource = self.masker.mask_value(_pb_attributes(rs.resource.attributes))
            for ss in rs.scope_spans:
                scope = ss.scope.name
                scoped = {**resource, "otel.scope.name": scope} if scope else resource
                for s in ss.spans:
                    trace_id, span_id = s.trace_id, s.span_id
                    if len(trace_id) != 16 or not any(trace_id):
                        out.reject("a span's trace_id is not 16 bytes (or is all zeros)")
                        continue
                    if len(span_id) != 8 or not any(span_id):
                        out.reject("a span's span_id is not 8 bytes (or is all zeros)")
                        continue
                    parent = s.parent_span_id
                    if parent and len(parent) != 8:
                        out.reject("a span's parent_span_id is not 8 bytes")
                        continue
                    pb_events = s.events
                    events = (
                        [
                            {
                                "name": e.name,
                                "time_ns": min(e.time_unix_nano, _INT64),
                                "attributes": _pb_attributes(e.attributes),
                            }
                            for e in pb_events[:MAX_EVENTS]
                        ]
                        if pb_events
                        else []
                    )
                    status = s.status
                    span = self._span(
                        trace_id.hex(),
                        span_id.hex(),
                        parent.hex() if any(parent) else "",
                        s.name,
                        _KIND_NAMES.get(s.kind, "internal"),
                        s.start_time_unix_nano,
                        s.end_time_unix_nano,
                        _STATUS_NAMES.get(status.code, "unset"),
                        status.message,
                        _pb_attributes(s.attributes),
                        events,
                        scoped,
                        out,
                    )
                    if span is not None:
                        out.spans.append(span)
        if self.masker and out.spans:
            mask_spans(self.masker, out.spans)
        return out

    # JSON ----------------------------------------------------------------------------

    def json(self, body: bytes) -> Decoded:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not JSON ({exc})") from None
        if not isinstance(request, dict):
            raise InvalidInput("the body is not an OTLP ExportTraceServiceRequest object")
        out = Decoded()
        for rs in _list(request, "resourceSpans", "resource_spans"):
            if not isinstance(rs, dict):
                raise InvalidInput("resourceSpans: each item must be an object")
            res = rs.get("resource") or {}
            try:
                attributes = _json_attributes(
                    res.get("attributes") if isinstance(res, dict) else None
                )
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"resource.attributes: {exc}") from None
            resource = self.masker.mask_value(attributes)
            for ss in _list(rs, "scopeSpans", "scope_spans"):
                if not isinstance(ss, dict):
                    raise InvalidInput("scopeSpans: each item must be an object")
                sc = ss.get("scope") or {}
                scope = str(sc.get("name", "") if isinstance(sc, dict) else "")[:200]
                scoped = {**resource, "otel.scope.name": scope} if scope else resource
                for s in _list(ss, "spans", "spans"):
                    try:
                        span = self._json_span(s, scoped, out)
                    except (TypeError, ValueError, KeyError, AttributeError) as exc:
                        out.reject(f"a span is malformed ({type(exc).__name__}: {exc})"[:300])
                        continue
                    if span is not None:
                        out.spans.append(span)
        if self.masker and out.spans:
            mask_spans(self.masker, out.spans)
        return out

    def _json_span(self, s: Any, resource: dict[str, Any], out: Decoded) -> Span | None:
        if not isinstance(s, dict):
            raise TypeError("a span must be an object")
        trace_id = _hex_id(_get(s, "traceId", "trace_id"), 32)
        span_id = _hex_id(_get(s, "spanId", "span_id"), 16)
        if trace_id is None:
            out.reject("a span's traceId is not 32 hex digits (or is all zeros)")
            return None
        if span_id is None:
            out.reject("a span's spanId is not 16 hex digits (or is all zeros)")
            return None
        raw_parent = _get(s, "parentSpanId", "parent_span_id") or ""
        parent = _hex_id(raw_parent, 16) if raw_parent else ""
        if parent is None:
            out.reject("a span's parentSpanId is not 16 hex digits")
            return None
        status = _get(s, "status", "status") or {}
        if not isinstance(status, dict):
            raise TypeError("status must be an object")
        events = []
        for e in (_get(s, "events", "events") or [])[:MAX_EVENTS]:
            if not isinstance(e, dict):
                raise TypeError("an event must be an object")
            events.append(
                {
                    "name": str(e.get("name", "")),
                    "time_ns": min(_uint(_get(e, "timeUnixNano", "time_unix_nano")), _INT64),
                    "attributes": _json_attributes(e.get("attributes")),
                }
            )
        return self._span(
            trace_id,
            span_id,
            parent,
            str(s.get("name", "")),
            _KIND_JSON.get(str(s.get("kind", 0)), "internal"),
            _uint(_get(s, "startTimeUnixNano", "start_time_unix_nano")),
            _uint(_get(s, "endTimeUnixNano", "end_time_unix_nano")),
            _STATUS_JSON.get(str(status.get("code", 0)), "unset"),
            str(status.get("message", "")),
            _json_attributes(s.get("attributes")),
            events,
            resource,
            out,
        )

    # both ----------------------------------------------------------------------------

    def _span(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str,
        name: str,
        kind: str,
        start_ns: int,
        end_ns: int,
        status: str,
        status_message: str,
        attrs: dict[str, Any],
        events: list[dict[str, Any]],
        resource: dict[str, Any],
        out: Decoded,
    ) -> Span | None:
        if not start_ns:
            out.reject("a span has no start time")
            return None
        start_ns = min(start_ns, _INT64)
        end_ns = max(start_ns, min(end_ns, _INT64)) if end_ns else start_ns
        g = attrs.get
        model = g("gen_ai.response.model") or g("gen_ai.request.model") or g("llm.model_name")
        operation = g("gen_ai.operation.name") or g("openinference.span.kind") or ""
        input_tokens = _count(
            g("gen_ai.usage.input_tokens"),
            g("gen_ai.usage.prompt_tokens"),
            g("llm.token_count.prompt"),
            g("llm.usage.prompt_tokens"),
        )
        output_tokens = _count(
            g("gen_ai.usage.output_tokens"),
            g("gen_ai.usage.completion_tokens"),
            g("llm.token_count.completion"),
            g("llm.usage.completion_tokens"),
        )
        cost = _number(g("shipyard.cost_usd"), g("gen_ai.usage.cost"), g("llm.cost.total"))
        model = str(model) if model else ""
        if cost is None and model and self.price is not None and (input_tokens or output_tokens):
            price = self.price(model)
            if price is not None:
                cost = (input_tokens * price[0] + output_tokens * price[1]) / 1e6
        text_in = text_out = ""
        if self.capture_content:
            text_in = _content(attrs, _INPUT_KEYS, "llm.input_messages.", "gen_ai.prompt.")
            text_out = _content(attrs, _OUTPUT_KEYS, "llm.output_messages.", "gen_ai.completion.")
            if not text_in or not text_out:
                ev_in, ev_out = _event_content(events)
                text_in, text_out = text_in or ev_in, text_out or ev_out
        for key in _CONTENT_KEYS.intersection(attrs):
            del attrs[key]
        if not self.capture_content:
            _drop_content(attrs, events)
        if len(attrs) > MAX_ATTRIBUTES:
            attrs = dict(list(attrs.items())[:MAX_ATTRIBUTES])
        ttft = _number(g("shipyard.ttft_ms"))
        status_message = status_message[:MAX_VALUE_CHARS]
        user = str(g("user.id") or g("enduser.id") or g("langfuse.user.id") or "")[:200]
        session = str(
            g("session.id") or g("gen_ai.conversation.id") or g("langfuse.session.id") or ""
        )[:200]
        text_in, text_out = cut(text_in, self.max_chars), cut(text_out, self.max_chars)
        provider = str(g("gen_ai.provider.name") or g("gen_ai.system") or g("llm.provider") or "")
        route = str(g("shipyard.route") or "")
        return Span(
            workspace_id=self.workspace_id,
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent_id,
            name=name[:1000],
            kind=kind if kind in KINDS else "internal",
            start_ns=start_ns,
            end_ns=end_ns,
            status=status,
            status_message=status_message,
            service=str(resource.get("service.name") or "")[:200],
            operation=str(operation).lower()[:100],
            model=model[:200],
            provider=provider[:100],
            route=route[:200],
            key_id=self.key_id,
            user_id=user,
            session_id=session,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost or 0.0,
            ttft_ms=ttft,
            input=text_in,
            output=text_out,
            attributes=attrs,
            events=events,
            resource=resource,
        )


def mask_spans(masker: Masker, spans: list[Span]) -> None:
    """Mask, in place, the spans that hold something to mask. Most hold nothing: the
    masker looks at a request's spans at once (`Masker.which`), and only the spans it
    finds something in are masked value by value. A key that needs masking or names a
    secret sends its span there at once."""
    texts = [_texts(masker, span) for span in spans]
    readable = [i for i, t in enumerate(texts) if t is not None]
    dirty = [i for i, t in enumerate(texts) if t is None]
    dirty += [readable[k] for k in masker.which([texts[i] or () for i in readable])]
    for i in dirty:
        _mask_span(masker, spans[i])


def _texts(masker: Masker, span: Span) -> list[str] | None:
    """The strings of a span that masking reads; None when a key of its attributes needs
    masking or names a secret."""
    out = [span.name, span.status_message, span.user_id, span.session_id, span.input, span.output]
    if not _strings(masker, span.attributes, out, 0):
        return None
    for e in span.events:
        if not _strings(masker, e["attributes"], out, 0):
            return None
    return out


_SCALARS = frozenset((int, float, bool, type(None)))


def _strings(masker: Masker, value: Any, out: list[str], depth: int) -> bool:
    """Add the strings of a value that masking reads to `out`; False when a key needs
    masking or names a secret, or the value is deeper or stranger than a reader makes."""
    if depth > MAX_DEPTH:
        return False
    if type(value) is dict:
        if not masker.clean_keys.issuperset(value) and not all(map(masker.clean_key, value)):
            return False
        values: Iterable[Any] = value.values()
    elif type(value) is list:
        values = value
    else:
        return False
    for v in values:
        kind = type(v)
        if kind is str:
            out.append(v)
        elif kind is dict or kind is list:
            if not _strings(masker, v, out, depth + 1):
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _mask_span(masker: Masker, span: Span) -> None:
    mask = masker.mask
    span.name = mask(span.name)
    span.status_message = mask(span.status_message)
    span.user_id, span.session_id = mask(span.user_id), mask(span.session_id)
    span.input, span.output = mask(span.input), mask(span.output)
    span.attributes = masker.mask_value(span.attributes)
    span.events = [
        {**e, "attributes": masker.mask_value(e["attributes"])} if e["attributes"] else e
        for e in span.events
    ]


def response(decoded: Decoded, *, json: bool) -> bytes:
    """The ExportTraceServiceResponse, with partial_success when spans were rejected."""
    if json:
        if not decoded.rejected:
            return b"{}"
        return orjson.dumps(
            {
                "partialSuccess": {
                    "rejectedSpans": str(decoded.rejected),
                    "errorMessage": decoded.message,
                }
            }
        )
    reply = ExportTraceServiceResponse()
    if decoded.rejected:
        reply.partial_success.rejected_spans = decoded.rejected
        reply.partial_success.error_message = decoded.message
    data: bytes = reply.SerializeToString()
    return data


# Attribute values ------------------------------------------------------------------------


def _pb_attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:  # strings and ints inline: most values are (~15% of the decode)
        key, v = kv.key, kv.value
        if len(key) > 200:
            key = key[:200]
        kind = v.WhichOneof("value")
        if kind == "string_value":
            s = v.string_value
            out[key] = s if len(s) <= MAX_VALUE_CHARS else cut(s, MAX_VALUE_CHARS)
        elif kind == "int_value":
            out[key] = v.int_value
        else:
            out[key] = _pb_value(v, 0)
    return out


def _pb_value(v: Any, depth: int) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        s: str = v.string_value
        return s if len(s) <= MAX_VALUE_CHARS else cut(s, MAX_VALUE_CHARS)
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        d: float = v.double_value
        return d if d == d and d not in (float("inf"), float("-inf")) else None
    if kind == "bool_value":
        return v.bool_value
    if depth >= MAX_DEPTH:
        return None
    if kind == "array_value":
        return [_pb_value(x, depth + 1) for x in v.array_value.values[:MAX_ATTRIBUTES]]
    if kind == "kvlist_value":
        return {
            kv.key[:200]: _pb_value(kv.value, depth + 1)
            for kv in v.kvlist_value.values[:MAX_ATTRIBUTES]
        }
    if kind == "bytes_value":
        return v.bytes_value.hex()[:MAX_VALUE_CHARS]
    return None


def _json_attributes(kvs: Any) -> dict[str, Any]:
    if not kvs:
        return {}
    if not isinstance(kvs, list):
        raise TypeError("attributes must be a list of {key, value}")
    out: dict[str, Any] = {}
    for kv in kvs[: MAX_ATTRIBUTES * 2]:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise TypeError("an attribute must be an object with a string key")
        out[kv["key"][:200]] = _json_value(kv.get("value"), 0)
    return out


def _json_value(v: Any, depth: int) -> Any:
    if not isinstance(v, dict) or not v:
        return None
    if "stringValue" in v or "string_value" in v:
        s = _get(v, "stringValue", "string_value")
        s = s if isinstance(s, str) else str(s)
        return s if len(s) <= MAX_VALUE_CHARS else cut(s, MAX_VALUE_CHARS)
    if "intValue" in v or "int_value" in v:
        n = int(_get(v, "intValue", "int_value"))
        return max(-_INT64 - 1, min(_INT64, n))
    if "doubleValue" in v or "double_value" in v:
        d = float(_get(v, "doubleValue", "double_value"))
        return d if d == d and d not in (float("inf"), float("-inf")) else None
    if "boolValue" in v or "bool_value" in v:
        return bool(_get(v, "boolValue", "bool_value"))
    if depth >= MAX_DEPTH:
        return None
    if "arrayValue" in v or "array_value" in v:
        values = (_get(v, "arrayValue", "array_value") or {}).get("values") or []
        return [_json_value(x, depth + 1) for x in values[:MAX_ATTRIBUTES]]
    if "kvlistValue" in v or "kvlist_value" in v:
        values = (_get(v, "kvlistValue", "kvlist_value") or {}).get("values") or []
        return {
            str(kv.get("key", ""))[:200]: _json_value(kv.get("value"), depth + 1)
            for kv in values[:MAX_ATTRIBUTES]
            if isinstance(kv, dict)
        }
    if "bytesValue" in v or "bytes_value" in v:
        return str(_get(v, "bytesValue", "bytes_value"))[:MAX_VALUE_CHARS]
    return None


def _get(d: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = d.get(camel)
    return d.get(snake) if value is None else value


def _list(d: Mapping[str, Any], camel: str, snake: str) -> list[Any]:
    value = _get(d, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{camel} must be a list")
    return value


def _hex_id(value: Any, digits: int) -> str | None:
    if not isinstance(value, str) or len(value) != digits:
        return None
    try:
        if not int(value, 16):
            return None
    except ValueError:
        return None
    return value.lower()


def _uint(value: Any) -> int:
    if value is None or value == "":
        return 0
    n = int(value)  # a JSON int64 is a string or a number
    if n < 0:
        raise ValueError("a time is negative")
    return n


def _count(*values: Any) -> int:
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            return max(0, min(v, 1 << 31))
        if isinstance(v, float) and v == v:
            return max(0, min(int(v), 1 << 31))
    return 0


def _number(*values: Any) -> float | None:
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float) and v == v and abs(v) < 1e12:
            return float(v)
    return None


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more characters]"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


def _content(attrs: dict[str, Any], keys: tuple[str, ...], *prefixes: str) -> str:
    """The first content attribute set, else the flattened messages, one per line."""
    for key in keys:
        value = attrs.get(key)
        if value:
            return _text(value)
    lines: list[str] = []
    for prefix in prefixes:
        for key, value in attrs.items():
            if key.startswith(prefix) and key.endswith("content") and value:
                lines.append(_text(value))
        if lines:
            break
    return "\n".join(lines)


_EVENT_INPUT = ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.tool.message")
_EVENT_OUTPUT = ("gen_ai.choice", "gen_ai.assistant.message")


def _event_content(events: list[dict[str, Any]]) -> tuple[str, str]:
    """Contents of the GenAI message events (older conventions)."""
    ins: list[str] = []
    outs: list[str] = []
    for e in events:
        name, a = e["name"], e["attributes"]
        if name == "gen_ai.content.prompt":
            ins.append(_text(a.get("gen_ai.prompt")))
        elif name == "gen_ai.content.completion":
            outs.append(_text(a.get("gen_ai.completion")))
        elif name in _EVENT_INPUT:
            ins.append(_text(a.get("content") or a.get("message") or a.get("body") or a))
        elif name in _EVENT_OUTPUT:
            outs.append(_text(a.get("message") or a.get("content") or a.get("body") or a))
    return "\n".join(i for i in ins if i), "\n".join(o for o in outs if o)


def _drop_content(attrs: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Capture is off for the workspace: message contents are not kept anywhere."""
    for key in [k for k in attrs if k.startswith(("llm.input_messages.", "llm.output_messages."))]:
        del attrs[key]
    for key in [k for k in attrs if k.startswith(("gen_ai.prompt.", "gen_ai.completion."))]:
        del attrs[key]
    for e in events:
        if e["name"].startswith("gen_ai."):
            e["attributes"] = {}
