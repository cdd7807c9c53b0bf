"""The floor for gateway benchmarks: the least a Python proxy on Shipyard's stack can do.

Not product code. A pure ASGI app (no framework) served the way `shipyard up` serves
(uvicorn, httptools with TCP_NODELAY, uvloop when installed, one process, no access log),
with one pooled aiohttp session made at lifespan start-up. Per request it checks
`Authorization: Bearer <token>` against one fixed token, reads the body, parses it with
orjson, sets `model` to the upstream's model name, POSTs it to the upstream, parses the
answer to read `usage`, and passes the upstream's bytes back as application/json.

    python bench/floor_proxy.py --port P --upstream http://127.0.0.1:U --token T
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


class NoDelayHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY, as Shipyard serves it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class FloorProxy:
    def __init__(self, upstream: str, token: str, model: str, upstream_key: str) -> None:
        self.url = upstream.rstrip("/") + "/v1/chat/completions"
        self.expected = b"bearer " + token.encode()
        self.model = model
        self.upstream_headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {upstream_key}",
        }
        self.session: aiohttp.ClientSession | None = None
        self.usage: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=60)
                self.session = aiohttp.ClientSession(
                    connector=connector,
                    headers=self.upstream_headers,
                    timeout=aiohttp.ClientTimeout(total=60),
                    skip_auto_headers=("User-Agent",),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/readyz":
            await respond(send, 200, b'{"status":"ok"}')
            return
        if path != "/v1/chat/completions" or scope["method"] != "POST":
            await respond(send, 404, b'{"error":{"message":"not found"}}')
            return
        auth = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
                break
        if not hmac.compare_digest(auth[:7].lower() + auth[7:], self.expected):
            await respond(send, 401, b'{"error":{"message":"invalid api key"}}')
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            await respond(send, 400, b'{"error":{"message":"body must be a JSON object"}}')
            return
        body["model"] = self.model
        assert self.session is not None
        try:
            async with self.session.post(self.url, data=orjson.dumps(body)) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            await respond(send, 502, b'{"error":{"message":"upstream unreachable"}}')
            return
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await respond(send, 502, b'{"error":{"message":"upstream sent no JSON"}}')
            return
        if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict):
            self.usage = parsed["usage"]
        await respond(send, status, raw)


async def respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    parser.add_argument("--token", required=True, help="the one accepted bearer token")
    parser.add_argument("--model", default="gpt-4o-mini", help="model name sent upstream")
    parser.add_argument("--upstream-key", default="sk-fake")
    args = parser.parse_args()
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    sys.setswitchinterval(0.0005)  # as `shipyard up` sets it
    uvicorn.run(
        FloorProxy(args.upstream, args.token, args.model, args.upstream_key),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop=loop,
        http=NoDelayHttpTools,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
