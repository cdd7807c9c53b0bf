"""The feedback capability's service."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipyard.platform import Platform


class Feedback:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
