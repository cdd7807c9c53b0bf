"""The three renderings of a `ShipyardError`, in one place:

- `problem`: RFC 9457 `application/problem+json` for the platform API and the edge;
- `openai`: OpenAI's `{"error": {"message", "type", "param", "code"}}` on `/v1`;
- `anthropic`: Anthropic's `{"type": "error", "error": {"type", "message"}}` on
  `/v1/messages`.

Each returns `(status, headers, body)` as raw ASGI values, so pure-ASGI code and
FastAPI handlers share them."""

from __future__ import annotations

from enum import Enum
from typing import Any

import orjson

from shipyard.errors import (
    Conflict,
    ErrorClass,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ShipyardError,
    Unauthenticated,
    UnsupportedMedia,
    UpstreamError,
)

Headers = list[tuple[bytes, bytes]]
PROBLEM = "application/problem+json"
_JSON = (b"content-type", b"application/json")


class Shape(Enum):
    problem = "problem"
    openai = "openai"
    anthropic = "anthropic"


def problem_bytes(status: int, title: str, detail: str, **extra: Any) -> bytes:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return orjson.dumps(body)


def headers_for(exc: ShipyardError) -> Headers:
    out: Headers = []
    if exc.retry_after is not None:
        out.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    if exc.status == 401:
        out.append((b"www-authenticate", b"Bearer"))
    return out


_OPENAI_TYPES: tuple[tuple[type[ShipyardError], str], ...] = (
    (QuotaExceeded, "insufficient_quota"),
    (RateLimited, "rate_limit_exceeded"),
    (Unauthenticated, "authentication_error"),
    (PermissionDenied, "permission_error"),
    (NotFound, "not_found_error"),
    (InvalidInput, "invalid_request_error"),
    (Conflict, "invalid_request_error"),
    (PayloadTooLarge, "invalid_request_error"),
    (UnsupportedMedia, "invalid_request_error"),
)
_CLIENT_UPSTREAM = {ErrorClass.context_length, ErrorClass.bad_request, ErrorClass.content_policy}


def openai_type(exc: ShipyardError) -> str:
    if isinstance(exc, UpstreamError):
        if exc.error_class is ErrorClass.rate_limit:
            return "rate_limit_exceeded"
        return "invalid_request_error" if exc.error_class in _CLIENT_UPSTREAM else "upstream_error"
    for cls, name in _OPENAI_TYPES:
        if isinstance(exc, cls):
            return name
    return "api_error"


def openai_body(exc: ShipyardError) -> dict[str, Any]:
    return {
        "error": {
            "message": exc.detail,
            "type": openai_type(exc),
            "param": exc.param,
            "code": exc.code,
        }
    }


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_body(exc: ShipyardError) -> dict[str, Any]:
    kind = _ANTHROPIC_TYPES.get(exc.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": exc.detail}}


def render(exc: ShipyardError, shape: Shape) -> tuple[int, Headers, bytes]:
    headers = headers_for(exc)
    if shape is Shape.problem:
        body = problem_bytes(exc.status, exc.title, exc.detail)
        return exc.status, [(b"content-type", PROBLEM.encode()), *headers], body
    payload = anthropic_body(exc) if shape is Shape.anthropic else openai_body(exc)
    return exc.status, [_JSON, *headers], orjson.dumps(payload)
