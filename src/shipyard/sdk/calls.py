"""What every SDK resource shares: a call described once (`Call`), run by the sync or
the async client, and the error an API failure raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")


class ShipyardAPIError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)


def _as(tp: Any) -> Callable[[Any], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(tp)
    return adapter.validate_python
