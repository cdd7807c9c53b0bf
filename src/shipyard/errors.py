"""One exception hierarchy for the whole platform, mapped to HTTP in `http/problems.py`.

    ShipyardError
    ├── ConfigError              settings are invalid (start-up, not HTTP)
    ├── InvalidInput        400  the request is well-formed JSON but makes no sense
    ├── Unauthenticated     401  no or bad credentials
    ├── PermissionDenied    403  credentials are fine, the role is not enough
    ├── NotFound            404
    ├── Conflict            409  a unique name is taken, a state forbids the change
    ├── PayloadTooLarge     413
    ├── UnsupportedMedia    415
    ├── RateLimited         429
    └── UpstreamError       502  a provider failed (the gateway refines this)

Services raise these; they never import FastAPI.
"""

from __future__ import annotations


class ShipyardError(Exception):
    status = 500
    title = "Internal error"
    type = "about:blank"

    def __init__(self, detail: str = "", **extra: object) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ConfigError(ShipyardError):
    title = "Invalid configuration"


class InvalidInput(ShipyardError):
    status = 400
    title = "Invalid input"


class Unauthenticated(ShipyardError):
    status = 401
    title = "Authentication required"


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


class UnsupportedMedia(ShipyardError):
    status = 415
    title = "Unsupported media type"


class RateLimited(ShipyardError):
    status = 429
    title = "Too many requests"


class UpstreamError(ShipyardError):
    status = 502
    title = "Upstream error"
