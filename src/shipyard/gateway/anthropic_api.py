"""`POST /v1/messages`: the Anthropic Messages API in front of any route."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from shipyard.gateway.formats import anthropic as fmt
from shipyard.gateway.service import Call, StreamReply
from shipyard.gateway.validate import chat as check_chat
from shipyard.identity.actor import Actor

if TYPE_CHECKING:
    from shipyard.gateway.asgi import GatewayApp


async def messages_handler(
    app: GatewayApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    actor: Actor,
    headers: dict[bytes, bytes],
) -> None:
    raw = await app.read_json(receive, headers)
    body = fmt.request_to_openai(raw)
    model = check_chat(body)
    from shipyard.gateway.asgi import no_cache

    call = Call(actor=actor, api="messages", body=body, no_cache=no_cache(headers))
    route = app.gateway.route_for(call, model, "chat")
    result = await app.gateway.run(call, route)
    if isinstance(result, StreamReply):
        events = fmt.stream_from_openai(result.chunks, model)
        await app.stream(
            receive,
            send,
            StreamReply(result.headers, events, result.finalize),
            encode=fmt.sse_event,
            done=b"",
        )
        return
    payload = result.body
    if isinstance(payload, bytes):
        import orjson

        payload = orjson.loads(payload)
    from shipyard.gateway.service import Reply

    await app.reply(send, Reply(fmt.response_from_openai(payload, model), result.headers))
