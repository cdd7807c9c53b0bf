"""Python SDK: `Client` (sync) and `AsyncClient` speak only the public HTTP API."""

from shipyard.sdk.calls import ShipyardAPIError
from shipyard.sdk.client import AsyncClient, Client, resolve_credentials
from shipyard.sdk.prompts import Prompt

__all__ = ["AsyncClient", "Client", "Prompt", "ShipyardAPIError", "resolve_credentials"]
