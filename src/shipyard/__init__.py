"""Shipyard: a self-hosted LLMOps platform."""

__version__ = "0.1.0"

TYPE_CHECKING = False  # type checkers read it as True; `import typing` is not free

if TYPE_CHECKING:
    from shipyard.sdk.tracing import flush as flush
    from shipyard.sdk.tracing import init as init
    from shipyard.sdk.tracing import session as session
    from shipyard.sdk.tracing import shutdown as shutdown
    from shipyard.sdk.tracing import span as span
    from shipyard.sdk.tracing import trace as trace
    from shipyard.sdk.tracing import user as user

# `shipyard.trace` and the rest import OpenTelemetry on first use, not at package import.
_TRACING = frozenset({"init", "flush", "shutdown", "trace", "span", "session", "user"})


def __getattr__(name: str) -> object:
    # `shipyard.Client` without importing the SDK (and httpx) at package import.
    if name in ("Client", "AsyncClient", "ShipyardAPIError"):
        from shipyard import sdk

        return getattr(sdk, name)
    if name in _TRACING:
        from shipyard.sdk import tracing

        value = getattr(tracing, name)
        globals()[name] = value
        return value
    raise AttributeError(name)
