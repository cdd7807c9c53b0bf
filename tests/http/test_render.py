"""One error tree, three renderings."""

from __future__ import annotations

import orjson
import pytest

from shipyard import errors
from shipyard.errors import ErrorClass, UpstreamError
from shipyard.http.render import Shape, render

CASES = [
    (errors.InvalidInput("bad", param="model"), 400, "invalid_request_error", None),
    (errors.Unauthenticated("who"), 401, "authentication_error", "invalid_api_key"),
    (errors.PermissionDenied("no"), 403, "permission_error", None),
    (errors.NotFound("gone", code="model_not_found"), 404, "not_found_error", "model_not_found"),
    (errors.Conflict("taken"), 409, "invalid_request_error", None),
    (errors.PayloadTooLarge("big"), 413, "invalid_request_error", "request_too_large"),
    (errors.UnsupportedMedia("xml"), 415, "invalid_request_error", "unsupported_media_type"),
    (
        errors.RateLimited("slow", retry_after=2.2),
        429,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    ),
    (errors.QuotaExceeded("spent"), 429, "insufficient_quota", "insufficient_quota"),
    (errors.ShipyardError("bug"), 500, "api_error", None),
    (UpstreamError("x", error_class=ErrorClass.timeout), 504, "upstream_error", "timeout"),
    (
        UpstreamError("x", error_class=ErrorClass.context_length),
        400,
        "invalid_request_error",
        "context_length",
    ),
]


@pytest.mark.parametrize(("exc", "status", "openai_type", "code"), CASES)
def test_each_error_renders_in_three_shapes(
    exc: errors.ShipyardError, status: int, openai_type: str, code: str | None
) -> None:
    s, headers, body = render(exc, Shape.openai)
    assert s == status
    assert orjson.loads(body)["error"] == {
        "message": exc.detail,
        "type": openai_type,
        "param": exc.param,
        "code": code,
    }
    s, headers, body = render(exc, Shape.problem)
    problem = orjson.loads(body)
    assert (s, problem["status"], problem["detail"]) == (status, status, exc.detail)
    assert dict(headers)[b"content-type"] == b"application/problem+json"
    s, headers, body = render(exc, Shape.anthropic)
    assert orjson.loads(body)["type"] == "error" and s == status
    if exc.retry_after is not None:
        assert dict(headers)[b"retry-after"] == b"2"
    if status == 401:
        assert dict(headers)[b"www-authenticate"] == b"Bearer"
