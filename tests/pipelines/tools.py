"""A tool the pipeline tests register (entry point group `shipyard.tools`)."""

from __future__ import annotations

from typing import Any


def shout(text: str) -> dict[str, Any]:
    return {"kind": "LOUD", "text": text.upper()}
