"""One exception hierarchy for the whole platform. Services and the gateway raise these
and never import FastAPI; `shipyard.http.render` turns them into HTTP replies in three
shapes (RFC 9457 problem+json for /api, OpenAI's error object on /v1, Anthropic's on
/v1/messages).

    ShipyardError              500  a bug or an unexpected failure ("api_error")
    ├── ConfigError                 settings are invalid (start-up, not HTTP)
    ├── InvalidInput           400  well-formed but wrong; names the field (`param`)
    │   └── MethodNotAllowed   405  the path exists, the method does not
    ├── Unauthenticated        401  no or bad credentials
    ├── PermissionDenied       403  credentials are fine, the role or a limit is not
    ├── NotFound               404
    ├── Conflict               409  a unique name is taken, a state forbids the change
    ├── PayloadTooLarge        413
    ├── UnsupportedMedia       415
    ├── RateLimited            429  a rate or token limit (`retry_after` set)
    │   └── QuotaExceeded      429  a budget is spent
    ├── Unavailable            503  busy or not ready: retry after `retry_after` seconds
    └── UpstreamError     4xx/5xx  a provider failed; `error_class` drives retries,
                                    cooldowns and fallbacks, and sets the status

`detail` is the human message, `code` a stable machine code (OpenAI's `code`), `param`
the offending parameter, `retry_after` seconds for a `Retry-After` header.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class ShipyardError(Exception):
    status = 500
    title = "Internal error"
    code: str | None = None

    def __init__(
        self,
        detail: str = "",
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.param = param
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class ConfigError(ShipyardError):
    title = "Invalid configuration"


class InvalidInput(ShipyardError):
    status = 400
    title = "Invalid input"


class MethodNotAllowed(InvalidInput):
    status = 405
    title = "Method not allowed"
    code = "method_not_allowed"


class Unauthenticated(ShipyardError):
    status = 401
    title = "Authentication required"
    code = "invalid_api_key"


class PermissionDenied(ShipyardError):
    status = 403
    title = "Permission denied"


class NotFound(ShipyardError):
    status = 404
    title = "Not found"


class Conflict(ShipyardError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(ShipyardError):
    status = 413
    title = "Payload too large"
    code = "request_too_large"


class UnsupportedMedia(ShipyardError):
    status = 415
    title = "Unsupported media type"
    code = "unsupported_media_type"


class RateLimited(ShipyardError):
    status = 429
    title = "Too many requests"
    code = "rate_limit_exceeded"


class QuotaExceeded(RateLimited):
    title = "Budget spent"
    code = "insufficient_quota"


class Unavailable(ShipyardError):
    status = 503
    title = "Service unavailable"
    code = "unavailable"


class ErrorClass(StrEnum):
    """Why a provider call failed, as retries, cooldowns and fallbacks see it."""

    rate_limit = "rate_limit"
    server_error = "server_error"
    timeout = "timeout"
    connect = "connect"
    context_length = "context_length"
    content_policy = "content_policy"
    bad_request = "bad_request"
    auth = "auth"
    malformed = "malformed"


RETRYABLE = frozenset(
    {
        ErrorClass.rate_limit,
        ErrorClass.server_error,
        ErrorClass.timeout,
        ErrorClass.connect,
        ErrorClass.malformed,
    }
)
_UPSTREAM_STATUS = {
    ErrorClass.rate_limit: 429,
    ErrorClass.timeout: 504,
    ErrorClass.context_length: 400,
    ErrorClass.content_policy: 400,
    ErrorClass.bad_request: 400,
    # server_error, connect, malformed and auth (the provider refused *our* credentials:
    # not the client's fault) are 502
}


class UpstreamError(ShipyardError):
    """A provider call failed. The executor adds what it tried (`retries`, `fallbacks`)."""

    title = "Upstream error"

    def __init__(
        self,
        detail: str,
        *,
        error_class: ErrorClass,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, retry_after=retry_after, code=error_class.value)
        self.error_class = error_class
        self.upstream_status = upstream_status
        self.status = _UPSTREAM_STATUS.get(error_class, 502)
        self.retries = 0
        self.fallbacks: list[str] = []

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE

    def scrub(self, secrets: list[str]) -> UpstreamError:
        """Make the message safe to show a client: no provider secret (redacted before
        truncating, so no fragment survives), and no upstream text on auth failures."""
        if self.error_class is ErrorClass.auth:
            text = "the provider refused Shipyard's credentials"
            if self.upstream_status:
                text += f" ({self.upstream_status})"
        else:
            text = redact(self.detail, secrets)
        self.detail = text[:500]
        self.args = (self.detail,)
        return self


REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (of 6 characters or more) replaced, and a piece of one
    that an earlier cut left at the end of the text (or its tail at the start)."""
    found = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)
    for secret in found:  # longest first: one secret may contain another
        text = text.replace(secret, REDACTED)
    for secret in found:
        for size in range(len(secret) - 1, 3, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + REDACTED
                break
        for size in range(len(secret) - 1, 3, -1):
            if text.startswith(secret[-size:]):
                text = REDACTED + text[size:]
                break
    return text


def classify_status(status: int, message: str = "") -> ErrorClass:
    text = message.lower()
    if status == 429:
        return ErrorClass.rate_limit
    if status in (401, 403):
        return ErrorClass.auth
    if status in (408, 504):
        return ErrorClass.timeout
    if status >= 500:
        return ErrorClass.server_error
    if "context length" in text or "context_length" in text or "maximum context" in text:
        return ErrorClass.context_length
    if "content policy" in text or "content_filter" in text or "safety" in text:
        return ErrorClass.content_policy
    return ErrorClass.bad_request
