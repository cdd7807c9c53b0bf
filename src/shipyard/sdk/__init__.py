"""Python SDK: `Client` (sync) and `AsyncClient` speak only the public HTTP API."""

from shipyard.sdk.client import AsyncClient, Client, ShipyardAPIError, resolve_credentials

__all__ = ["AsyncClient", "Client", "ShipyardAPIError", "resolve_credentials"]
