"""`POST /v1/traces`: OTLP/HTTP trace export, protobuf or JSON, gzip or not. A pure ASGI
app, dispatched before FastAPI like the gateway's `/v1`.

    edge check (Host, declared size) ─► API key (Bearer or x-api-key) ─► traces:write
    ─► room in the queue? (else 503 + Retry-After, before the body is read)
    ─► body (counted), gunzipped within a bound ─► Tracing.ingest in a thread:
       read (otlp.py) + mask ─► one write-ahead log append ─► 200, partial_success

A 200 is sent only once the spans are in the write-ahead log (they survive `kill -9`
from there); the writer stores them later. Errors follow OTLP/HTTP: a protobuf request
gets a protobuf `google.rpc.Status`, a JSON request a JSON problem (with `code` and
`message`, the Status fields, beside the problem+json ones)."""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING

import orjson
from google.rpc.status_pb2 import Status
from starlette.types import Receive, Scope, Send

from shipyard.audit.denials import DenialLog
from shipyard.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ShipyardError,
    UnsupportedMedia,
)
from shipyard.http.middleware import EdgeCheck
from shipyard.http.render import headers_for
from shipyard.identity.authn import KeyAuthenticator
from shipyard.identity.keygate import KeyGate
from shipyard.tracing.otlp import response

if TYPE_CHECKING:
    from shipyard.tracing.service import Tracing

log = logging.getLogger("shipyard.tracing.ingest")
PATH = "/v1/traces"
_PROTOBUF = (b"application/x-protobuf", b"application/protobuf")
_JSON = b"application/json"


class IngestApp:
    def __init__(
        self, tracing: Tracing, keys: KeyAuthenticator, denials: DenialLog, *, edge: EdgeCheck
    ) -> None:
        self.tracing = tracing
        self.gate = KeyGate(keys, denials, face="traces")
        self.edge = edge
        # a gzip body may expand this far, and no further (a zip bomb gets a 413)
        self.max_inflated = max(edge.max_body * 8, 16 << 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        json = ctype == _JSON
        try:
            if scope["path"] != PATH:
                raise NotFound(f"no route for {scope['method']} {scope['path']}")
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {PATH}; use POST")
            rejection, _ = self.edge.check(scope)
            if rejection is not None:
                raise rejection
            actor = await self.gate.admit(scope, headers, "traces:write", "send traces")
            if not json and ctype not in _PROTOBUF:
                raise UnsupportedMedia("send OTLP as application/x-protobuf or application/json")
            self.tracing.admit()  # 503 before reading a body there is no room for
            body = await self._body(receive, headers.get(b"content-encoding", b""))
            decoded = await self.tracing.ingest(actor, body, json=json)
        except ShipyardError as exc:
            await self._error(send, exc, json)
            return
        except Exception:  # a bug: log it, answer without a stack trace
            log.exception("trace ingest failure")
            await self._error(send, ShipyardError("trace ingest failed; see the server log"), json)
            return
        payload = response(decoded, json=json)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", _JSON if json else _PROTOBUF[0]),
                    (b"content-length", b"%d" % len(payload)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, receive: Receive, encoding: bytes) -> bytes:
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidInput("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.edge.max_body:
                raise PayloadTooLarge(f"the request body exceeds {self.edge.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        encoding = encoding.strip().lower()
        if encoding in (b"", b"identity"):
            return body
        if encoding not in (b"gzip", b"deflate"):
            raise UnsupportedMedia("Content-Encoding must be gzip, deflate or identity")
        return self._inflate(body, gzip=encoding == b"gzip")

    def _inflate(self, body: bytes, *, gzip: bool) -> bytes:
        inflater = zlib.decompressobj(wbits=31 if gzip else 15)
        try:
            out = inflater.decompress(body, self.max_inflated)
            if inflater.unconsumed_tail:
                raise PayloadTooLarge(
                    f"the body inflates past {self.max_inflated} bytes", code="inflated_too_large"
                )
            out += inflater.flush()
        except zlib.error as exc:
            kind = "gzip" if gzip else "deflate"
            raise InvalidInput(f"the body is not valid {kind} ({exc})") from None
        if not inflater.eof:
            raise InvalidInput("the compressed body is cut short")
        return out

    async def _error(self, send: Send, exc: ShipyardError, json: bool) -> None:
        headers = headers_for(exc)
        if isinstance(exc, MethodNotAllowed):
            headers.append((b"allow", b"POST"))
        if json:
            body = orjson.dumps(
                {
                    "type": "about:blank",
                    "title": exc.title,
                    "status": exc.status,
                    "detail": exc.detail,
                    "code": exc.status,
                    "message": exc.detail,
                }
            )
            ctype = b"application/problem+json"
        else:
            body = Status(code=_GRPC.get(exc.status, 13), message=exc.detail).SerializeToString()
            ctype = _PROTOBUF[0]
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [(b"content-type", ctype), *headers],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except Exception:  # noqa: BLE001 - the client went away
            pass


# HTTP status -> the google.rpc.Code a Status carries
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 3, 415: 3, 429: 8, 503: 14}
