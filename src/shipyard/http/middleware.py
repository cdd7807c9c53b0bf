"""Pure ASGI middleware (no BaseHTTPMiddleware): Host check, body limits, JSON-only
state changes, security headers. `EdgeCheck` is the one check of a request's headers,
shared by `EdgeGuard` (in front of FastAPI) and the `/v1` gateway app."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.errors import InvalidInput, PayloadTooLarge, ShipyardError, UnsupportedMedia
from shipyard.http.render import Shape, render

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class EdgeCheck:
    """What every request must pass before anything reads it: a Host this server
    serves (DNS rebinding), a declared body within the size limit, a URL without NUL,
    and JSON bodies for state changes under the JSON prefixes (OTLP's `/v1/traces`
    takes protobuf too)."""

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str],
        max_body_bytes: int,
        json_prefixes: tuple[str, ...] = ("/api/", "/v1/"),
        # bodies that are not JSON: OTLP protobuf, a catalog file, artifact uploads
        any_media: tuple[str, ...] = (
            "/v1/traces",
            "/api/registry/catalog/import",
            "/api/registry/artifacts",
            "/api/dataset-uploads/",
            "/api/kb-uploads/",
            "/v1/files",  # multipart uploads (OpenAI's Files API)
        ),
        large_bodies: dict[str, int] | None = None,
    ) -> None:
        hosts = {h.lower().encode() for h in allowed_hosts}
        self.any_host = b"*" in hosts
        self.hosts = hosts
        self.max_body = max_body_bytes
        self.json_prefixes = json_prefixes
        self.any_media = any_media
        # path prefix -> its own body limit (artifact uploads: weights are gigabytes)
        self.large = tuple((large_bodies or {}).items())

    def limit(self, path: str) -> int:
        for prefix, size in self.large:
            if path.startswith(prefix):
                return size
        return self.max_body

    def check(self, scope: Scope) -> tuple[ShipyardError | None, bool]:
        """(the rejection or None, whether the body is chunked)."""
        host = b""
        length = None
        ctype = b""
        chunked = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"content-length":
                length = value
            elif name == b"content-type":
                ctype = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if not self.any_host and _hostname(host) not in self.hosts:
            return InvalidInput("the Host header is not one this server serves"), chunked
        if length is not None and not length.isdigit():
            return InvalidInput("Content-Length is not a number"), chunked
        path: str = scope["path"]
        if length is not None and int(length) > (limit := self.limit(path)):
            return PayloadTooLarge(f"the request body exceeds {limit} bytes"), chunked
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # no store takes one back (PostgreSQL text cannot hold a NUL)
            return InvalidInput("the URL contains a NUL character"), chunked
        if (
            scope["method"] in _UNSAFE
            and path.startswith(self.json_prefixes)
            and (chunked or (length is not None and length != b"0"))
            and not _is_json(ctype)
            and not path.startswith(self.any_media)
        ):
            return UnsupportedMedia("send the body as application/json"), chunked
        return None, chunked


class EdgeGuard:
    """Runs `EdgeCheck` before any routing; counts chunked bodies as they arrive (413
    past the limit) and adds security headers to every reply."""

    def __init__(self, app: ASGIApp, *, edge: EdgeCheck) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rejection, chunked = self.edge.check(scope)
        if rejection is not None:
            await reject(send, rejection)
            return
        if chunked:
            await self._call_limited(scope, receive, send)
        else:  # the server delivers at most Content-Length bytes, already checked
            await self.app(scope, receive, self._headers(send))

    async def _call_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A chunked body is counted as it arrives; past the limit the app sees a
        disconnect, whatever it answers is dropped, and the client gets a 413."""
        seen = 0
        too_big = False
        started = False
        limit = self.edge.limit(scope["path"])
        headed = self._headers(send)

        async def counted() -> Message:
            nonlocal seen, too_big
            if too_big:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_big = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if too_big and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await headed(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not too_big or started:
                raise
        if too_big and not started:
            await reject(send, PayloadTooLarge(f"the request body exceeds {limit} bytes"))

    @staticmethod
    def _headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + _SECURITY_HEADERS
            await send(message)

        return wrapped


def _hostname(host: bytes) -> bytes:
    host = host.lower()
    if host.startswith(b"["):
        return host[: host.find(b"]") + 1]
    return host.rsplit(b":", 1)[0] if b":" in host else host


def _is_json(ctype: bytes) -> bool:
    main = ctype.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or main.endswith(b"+json")


async def reject(send: Send, exc: ShipyardError, shape: Shape = Shape.problem) -> None:
    status, headers, body = render(exc, shape)
    headers += [(b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
