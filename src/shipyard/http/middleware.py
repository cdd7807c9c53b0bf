"""Pure ASGI middleware (no BaseHTTPMiddleware): Host check, body limits, JSON-only
state changes, security headers. One class keeps the per-request cost to a few checks."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.http.problems import PROBLEM, problem_bytes

_UNSAFE = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class EdgeGuard:
    """Rejects, before any routing: unknown Host headers (DNS rebinding), bodies over
    the size limit (413), and non-JSON state changes under the JSON prefixes (415)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        max_body_bytes: int,
        json_prefixes: tuple[str, ...] = ("/api/", "/v1/"),
    ) -> None:
        self.app = app
        hosts = {h.lower() for h in allowed_hosts}
        self.any_host = "*" in hosts
        self.hosts = hosts
        self.max_body = max_body_bytes
        self.json_prefixes = json_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            await _reject(
                send, 400, "Invalid host", "the Host header is not one this server serves"
            )
            return
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                await _reject(send, 400, "Invalid header", "Content-Length is not a number")
                return
            if too_big:
                await _reject(send, 413, "Payload too large", f"body exceeds {self.max_body} bytes")
                return
        path: str = scope["path"]
        if (
            scope["method"].encode() in _UNSAFE
            and path.startswith(self.json_prefixes)
            and (chunked or (length is not None and length != b"0"))
            and not _is_json(ctype)
            and not path.startswith("/v1/traces")
        ):
            await _reject(send, 415, "Unsupported media type", "send the body as application/json")
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
        limit = self.max_body
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
            await _reject(send, 413, "Payload too large", f"body exceeds {limit} bytes")

    @staticmethod
    def _headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + _SECURITY_HEADERS
            await send(message)

        return wrapped


def _hostname(host: bytes) -> str:
    text = host.decode("latin-1").lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1]
    return text.rsplit(":", 1)[0] if ":" in text else text


def _is_json(ctype: bytes) -> bool:
    main = ctype.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or main.endswith(b"+json")


async def _reject(send: Send, status: int, title: str, detail: str) -> None:
    body = problem_bytes(status, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(body)).encode()),
                *_SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
