"""A tool the pipeline tests register (entry point group `shipyard.tools`)."""

from __future__ import annotations

import threading
from typing import Any


def shout(text: str) -> dict[str, Any]:
    return {"kind": "LOUD", "text": text.upper()}


RELEASE = threading.Event()


def hang() -> dict[str, Any]:
    """Blocks until the test releases it (at most 30 s): a tool past its timeout."""
    RELEASE.wait(30)
    return {"released": RELEASE.is_set()}


CALLS: list[str] = []


def count(text: str) -> dict[str, Any]:
    CALLS.append(text)
    return {"calls": len(CALLS), "text": text}
