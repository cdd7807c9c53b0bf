"""Shipyard: a self-hosted LLMOps platform."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `shipyard.Client` without importing the SDK (and httpx) at package import.
    if name in ("Client", "AsyncClient", "ShipyardAPIError"):
        from shipyard import sdk

        return getattr(sdk, name)
    raise AttributeError(name)
