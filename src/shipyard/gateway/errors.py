"""Gateway errors, in OpenAI's error shape.

GatewayError                      -> {"error": {"message", "type", "code", "param"}}
├── InvalidRequest          400   invalid_request_error
├── AuthenticationFailed    401   authentication_error
├── NotPermitted            403   permission_error
├── ModelNotFound           404   not_found_error
├── RateLimitExceeded       429   rate_limit_exceeded (Retry-After set)
├── InsufficientQuota       429   insufficient_quota (budget spent)
└── UpstreamFailure         4xx/5xx from a provider, classified for retries and fallbacks
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
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


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if code is not None:
            self.code = code

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotPermitted(GatewayError):
    status = 403
    type = "permission_error"


class ModelNotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class RateLimitExceeded(GatewayError):
    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class InsufficientQuota(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamFailure(GatewayError):
    """A provider call failed. `error_class` drives retries, cooldowns and fallbacks."""

    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, code=error_class.value)
        self.error_class = error_class
        self.upstream_status = upstream_status
        self.status = _STATUS.get(error_class, 502)
        if error_class is ErrorClass.rate_limit:
            self.type = "rate_limit_exceeded"
        elif error_class in (
            ErrorClass.context_length,
            ErrorClass.bad_request,
            ErrorClass.content_policy,
        ):
            self.type = "invalid_request_error"

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE

    def scrub(self, secrets: list[str]) -> UpstreamFailure:
        """Make the message safe to show a client: no provider secret (redacted before
        truncating, so no fragment survives), and no upstream text on auth failures."""
        if self.error_class is ErrorClass.auth:
            text = "the provider refused Shipyard's credentials"
            if self.upstream_status:
                text += f" ({self.upstream_status})"
        else:
            text = self.message
            for secret in secrets:
                if secret and len(secret) >= 6:
                    text = text.replace(secret, "[redacted]")
        self.message = text[:500]
        self.args = (self.message,)
        return self


_STATUS = {
    ErrorClass.rate_limit: 429,
    ErrorClass.server_error: 502,
    ErrorClass.timeout: 504,
    ErrorClass.connect: 502,
    ErrorClass.malformed: 502,
    ErrorClass.context_length: 400,
    ErrorClass.content_policy: 400,
    ErrorClass.bad_request: 400,
    ErrorClass.auth: 502,  # the provider refused *our* credentials: not the client's fault
}


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
