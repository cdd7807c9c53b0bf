"""`POST /v1/messages`: the Anthropic Messages API in front of any route."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from shipyard.gateway.core.call import MESSAGES_API, Reply, StreamReply
from shipyard.gateway.formats import anthropic as fmt
from shipyard.identity.actor import Actor

if TYPE_CHECKING:
    from shipyard.gateway.api.v1 import GatewayApp


async def messages_handler(
    app: GatewayApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    actor: Actor,
    headers: dict[bytes, bytes],
) -> None:
    body = fmt.request_to_openai(await app.read_json(receive))
    result = await app.call(MESSAGES_API, actor, body, headers)
    model = body["model"]
    if isinstance(result, StreamReply):
        events = fmt.stream_from_openai(result.chunks, model)
        stream = StreamReply(result.headers, events, result.finalize)
        await app.stream(receive, send, stream, encode=fmt.sse_event, done=b"")
        return
    reply = Reply(fmt.response_from_openai(result.json(), model), result.headers)
    await app.reply(send, reply)
