"""A fast fake OpenAI upstream for benchmarks: raw asyncio protocol, keep-alive, one canned
chat completion shaped like a real provider's (about 1 KB of JSON, with detailed usage).
Run: python bench/fake_upstream.py PORT"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import cast

MODEL = "gpt-4o-mini"
CONTENT = (
    "A lighthouse keeper's day starts before dawn: they climb the tower, clean the lens and "
    "trim the wick so the light is clear for ships still at sea. Through the morning they log "
    "the weather, note passing vessels and check the fog signal. In the afternoon there is "
    "maintenance to do, from painting the railings to repairing the boat that brings "
    "supplies. As evening falls they light the lamp again and keep watch through the night, "
    "winding the clockwork that turns the lens every few hours."
)
COMPLETION = {
    "id": "chatcmpl-BQ7x2mYfKp3vR9sLw4nT8eHdA1cZu",
    "object": "chat.completion",
    "created": 1767225600,
    "model": f"{MODEL}-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": CONTENT,
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 24,
        "completion_tokens": 98,
        "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_560af6e559",
}
BODY = json.dumps(COMPLETION, separators=(",", ":")).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\nconnection: keep-alive\r\n\r\n"
    + BODY
)


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                end = head.find(b"\r\n", i)
                length = int(head[i + 15 : end if end > 0 else None])
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            self.transport.write(RESPONSE)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1])))
